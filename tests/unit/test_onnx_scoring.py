"""The ONNX conversion: kept only within the tolerance of XGBoost, used for small calls only,
and only where the settings' runtime says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services import onnx_scoring
from services.datagen import generate
from services.model_cache import cached_artifacts, load_cached
from services.onnx_scoring import SMALL_CALL_ROWS, TOLERANCE, check_conversion
from services.registry_keys import BOOSTER_ARTIFACT, ONNX_ARTIFACT, SPEC_ARTIFACT
from services.scoring import ScoringModel
from services.settings import (
    MODEL_CACHE_DIR_ENV,
    SERVING_RUNTIME_ENV,
    TRACKING_URI_ENV,
    get_settings,
)
from tests.models import copying, model_files

pytestmark = pytest.mark.unit


def encoded_rows(model: ScoringModel, rows: int, seed: int = 3) -> np.ndarray:
    """Generated rows of the model's service (categories, gaps, booleans), encoded."""
    return model.encoder.encode_frame(generate(model.spec, rows, seed))


@pytest.fixture(scope="module")
def fraud(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return model_files(tmp_path_factory.mktemp("fraud"), trees=50, onnx=True)


def test_a_binary_booster_converts_within_the_tolerance_and_is_kept(fraud):
    model = ScoringModel.load(fraud[BOOSTER_ARTIFACT], fraud[SPEC_ARTIFACT])
    conversion = check_conversion(model.booster, encoded_rows(model, 2_000))
    assert conversion.passed and conversion.verdict.startswith("kept")
    assert "2,000 test rows" in conversion.verdict


def test_a_conversion_off_by_more_than_the_tolerance_is_dropped(tmp_path):
    """demand-forecast's regression values (tens of units) differ by more than 1e-6 in float32
    sums of 50 trees: the version carries no conversion and is scored by XGBoost."""
    files = model_files(tmp_path, "demand-forecast", trees=50)
    model = ScoringModel.load(files[BOOSTER_ARTIFACT], files[SPEC_ARTIFACT])
    conversion = check_conversion(model.booster, encoded_rows(model, 2_000))
    assert not conversion.passed
    assert conversion.verdict.startswith("dropped") and "exceeds 1e-06" in conversion.verdict


def test_a_converter_error_is_a_verdict_not_a_failure(fraud, monkeypatch):
    def refuses(booster: object) -> bytes:
        raise RuntimeError("unsupported split")

    monkeypatch.setattr(onnx_scoring, "convert", refuses)
    model = ScoringModel.load(fraud[BOOSTER_ARTIFACT], fraud[SPEC_ARTIFACT])
    conversion = check_conversion(model.booster, encoded_rows(model, 10))
    assert not conversion.passed
    assert conversion.verdict == "conversion failed (RuntimeError: unsupported split)"


def test_small_calls_go_to_onnx_runtime_and_large_ones_to_xgboost(fraud):
    plain = ScoringModel.load(fraud[BOOSTER_ARTIFACT], fraud[SPEC_ARTIFACT])
    both = ScoringModel.load(fraud[BOOSTER_ARTIFACT], fraud[SPEC_ARTIFACT], fraud[ONNX_ARTIFACT])
    assert (plain.runtime, both.runtime) == ("xgboost", "onnx")
    rows = encoded_rows(plain, 500)
    for row in rows[:200]:  # one record per call, as /predict gets them
        single = row.reshape(1, -1)
        assert both.predict_matrix(single) == pytest.approx(
            plain.predict_matrix(single), abs=TOLERANCE
        )
    small = rows[:SMALL_CALL_ROWS]
    onnx_only = both.small_calls(small)
    assert np.array_equal(both.predict_matrix(small), onnx_only)
    assert not np.array_equal(onnx_only, plain.predict_matrix(small))  # a different runtime
    large = rows[: SMALL_CALL_ROWS + 1]
    assert np.array_equal(both.predict_matrix(large), plain.booster.inplace_predict(large))


@pytest.mark.parametrize(("runtime", "expected"), [(None, "onnx"), ("xgboost", "xgboost")])
def test_the_runtime_setting_chooses_what_a_cached_version_serves_with(
    fraud, tmp_path, monkeypatch, runtime, expected
):
    monkeypatch.setenv(MODEL_CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(TRACKING_URI_ENV, "http://127.0.0.1:9")  # nothing answers there
    if runtime is None:
        monkeypatch.delenv(SERVING_RUNTIME_ENV, raising=False)
    else:
        monkeypatch.setenv(SERVING_RUNTIME_ENV, runtime)
    cached_artifacts("fraud-detection", "1", copying(fraud))
    assert load_cached("fraud-detection", "1").runtime == expected


def test_a_version_without_a_conversion_serves_with_xgboost(fraud, tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(SERVING_RUNTIME_ENV, raising=False)
    without = {name: fraud[name] for name in (BOOSTER_ARTIFACT, SPEC_ARTIFACT)}
    cached_artifacts("fraud-detection", "2", copying(without))
    assert load_cached("fraud-detection", "2").runtime == "xgboost"


def test_an_unknown_runtime_is_refused_by_name(monkeypatch):
    monkeypatch.setenv(SERVING_RUNTIME_ENV, "tensorrt")
    with pytest.raises(ValueError, match=f"{SERVING_RUNTIME_ENV}='tensorrt'.*onnx, xgboost"):
        get_settings()
