"""Deterministic generators: same inputs, same frame; valid rows; drift knobs that work."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn import metrics as skm

from services.datagen import DRIFT_KINDS, generate
from services.encoding import FeatureEncoder
from services.schema import validate_frame
from services.spec import load_spec, service_names

pytestmark = pytest.mark.unit

ROWS = 4_000
SERVICES = service_names()


@pytest.fixture(scope="module")
def frames():
    """(service, drift) -> frame of ROWS rows with seed 1."""
    return {
        (name, drift): generate(load_spec(name), ROWS, seed=1, drift=drift)
        for name in SERVICES
        for drift in DRIFT_KINDS
    }


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize("drift", DRIFT_KINDS)
def test_same_inputs_give_identical_frames(name, drift, frames):
    again = generate(load_spec(name), ROWS, seed=1, drift=drift)
    pd.testing.assert_frame_equal(frames[name, drift], again)


@pytest.mark.parametrize("name", SERVICES)
def test_another_seed_gives_other_rows(name, frames):
    other = generate(load_spec(name), ROWS, seed=2)
    assert not frames[name, "none"].equals(other)
    numeric = next(f.name for f in load_spec(name).features if f.type == "numeric")
    assert not np.allclose(frames[name, "none"][numeric], other[numeric], equal_nan=True)


@pytest.mark.parametrize("name", SERVICES)
def test_columns_are_the_features_then_the_target(name, frames):
    spec = load_spec(name)
    assert list(frames[name, "none"].columns) == [*spec.feature_names, spec.target]
    assert len(frames[name, "none"]) == ROWS


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize("drift", ["none", "covariate", "concept"])
def test_generated_rows_are_valid(name, drift, frames):
    assert validate_frame(load_spec(name), frames[name, drift]) == []


def test_unknown_drift_is_refused():
    with pytest.raises(ValueError, match="unknown drift 'seasonal'"):
        generate(load_spec("fraud-detection"), 10, 0, "seasonal")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", SERVICES)
def test_missing_values_only_in_nullable_columns(name, frames):
    spec = load_spec(name)
    frame = frames[name, "none"]
    for f in spec.features:
        missing = frame[f.name].isna().mean()
        if f.nullable:
            assert 0.005 < missing < 0.2, f"{f.name}: {missing:.3f} missing"
        else:
            assert missing == 0, f"{f.name} is not nullable but has gaps"
    assert frame[spec.target].notna().all()


@pytest.mark.parametrize("name", SERVICES)
def test_categorical_columns_cover_their_categories(name, frames):
    for f in load_spec(name).features:
        if f.type == "categorical":
            assert set(frames[name, "none"][f.name]) == set(f.categories or ())


def test_fraud_target_is_rare_but_present(frames):
    rate = frames["fraud-detection", "none"]["is_fraud"].mean()
    assert 0.01 < rate < 0.2


def _numeric_shift(spec, clean: pd.DataFrame, drifted: pd.DataFrame) -> dict[str, float]:
    """Standardised mean difference per numeric/integer feature."""
    shifts = {}
    for f in spec.features:
        if f.type in ("numeric", "integer"):
            a, b = clean[f.name].astype(float), drifted[f.name].astype(float)
            shifts[f.name] = abs(b.mean() - a.mean()) / (a.std() or 1.0)
    return shifts


@pytest.mark.parametrize("name", SERVICES)
def test_covariate_drift_shifts_feature_distributions(name, frames):
    spec = load_spec(name)
    shifts = _numeric_shift(spec, frames[name, "none"], frames[name, "covariate"])
    moved = [col for col, shift in shifts.items() if shift > 0.25]
    assert len(moved) >= 2, shifts
    # an independent clean sample does not move
    baseline = _numeric_shift(spec, frames[name, "none"], generate(spec, ROWS, seed=9))
    assert max(baseline.values()) < 0.1, baseline


@pytest.mark.parametrize("name", SERVICES)
def test_new_categories_appear_outside_the_spec(name, frames):
    spec = load_spec(name)
    frame = frames[name, "new-categories"]
    unknown = {
        f.name: set(frame[f.name]) - set(f.categories or ())
        for f in spec.features
        if f.type == "categorical"
    }
    new = {col: values for col, values in unknown.items() if values}
    assert new, "no value outside the spec's categories"
    problems = validate_frame(spec, frame)
    assert problems and {p.column for p in problems} == set(new)
    # the clean data has none
    assert validate_frame(spec, frames[name, "none"]) == []


def _fit(spec, frame: pd.DataFrame) -> xgb.Booster:
    encoder = FeatureEncoder(spec)
    matrix = xgb.DMatrix(
        encoder.encode_frame(frame),
        label=frame[spec.target].to_numpy(),
        feature_names=encoder.names,
        feature_types=encoder.feature_types,
        enable_categorical=True,
    )
    params = spec.model.params | {"nthread": 1}
    return xgb.train(params, matrix, num_boost_round=40)


def _score(spec, booster: xgb.Booster, frame: pd.DataFrame) -> float:
    raw = booster.inplace_predict(FeatureEncoder(spec).encode_frame(frame))
    y = frame[spec.target].to_numpy()
    if spec.task == "binary":
        return float(skm.roc_auc_score(y, raw))
    return float(skm.root_mean_squared_error(y, raw))


@pytest.mark.parametrize("name", SERVICES)
def test_concept_drift_breaks_a_model_trained_on_clean_data(name, frames):
    spec = load_spec(name)
    booster = _fit(spec, generate(spec, ROWS, seed=3))
    clean = _score(spec, booster, frames[name, "none"])
    drifted = _score(spec, booster, frames[name, "concept"])
    if spec.task == "binary":
        assert clean > 0.8
        assert drifted < clean - 0.2, (clean, drifted)
    else:
        assert drifted > 2 * clean, (clean, drifted)
    # the features themselves look the same: only their relation to the target changed
    shifts = _numeric_shift(spec, frames[name, "none"], frames[name, "concept"])
    assert max(shifts.values()) < 0.1, shifts
