"""Traffic rows: generated for services with a generator, sampled from the snapshot otherwise,
with the drift kinds a spec can show (and a one-line refusal of those it cannot)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from services.datagen import generate
from services.layout import ServicePaths
from services.schema import validate_frame
from services.settings import PACKAGE_REPO
from services.spec import SPEC_FILE, load_spec
from services.traffic import NEW_CATEGORY, TrafficError, traffic_rows
from tests.own_data import SERVICE as OWN
from tests.own_data import TARGET, add_service, snapshot_frame

pytestmark = pytest.mark.unit

CARDS = "card-snapshot"  # the fraud spec with a snapshot instead of a generator
GENERATED = "fraud-detection"


@pytest.fixture
def tree(tmp_path, monkeypatch):
    shutil.copy(PACKAGE_REPO / "params.yaml", tmp_path)
    add_service(tmp_path)
    shutil.copytree(PACKAGE_REPO / "services" / GENERATED, tmp_path / "services" / GENERATED)
    folder = tmp_path / "services" / CARDS
    folder.mkdir()
    spec_text = (PACKAGE_REPO / "services" / GENERATED / SPEC_FILE).read_text()
    (folder / SPEC_FILE).write_text(spec_text.replace(f"name: {GENERATED}", f"name: {CARDS}"))
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(tmp_path))
    snapshot = ServicePaths(CARDS).snapshot
    snapshot.parent.mkdir(parents=True)
    generate(load_spec(GENERATED), 2_000, seed=5).to_parquet(snapshot, index=False)
    return tmp_path


def as_rows(frame: pd.DataFrame) -> set[str]:
    return set(frame.to_json(orient="records", lines=True).splitlines())


def test_a_service_with_a_generator_gets_generated_rows(tree):
    spec = load_spec(GENERATED)
    pd.testing.assert_frame_equal(traffic_rows(spec, 50, 3), generate(spec, 50, 3))


def test_rows_of_a_service_without_a_generator_come_from_its_snapshot(tree):
    spec = load_spec(OWN)
    rows = traffic_rows(spec, 200, seed=1)
    assert list(rows.columns) == [*spec.feature_names, TARGET] and len(rows) == 200
    assert as_rows(rows) <= as_rows(snapshot_frame())
    pd.testing.assert_frame_equal(rows, traffic_rows(spec, 200, seed=1))
    assert not rows.equals(traffic_rows(spec, 200, seed=2))
    assert len(traffic_rows(spec, 2_000, seed=1)) == 2_000  # more than the snapshot holds


def test_a_missing_snapshot_says_what_to_run(tree):
    ServicePaths(OWN).snapshot.unlink()
    with pytest.raises(TrafficError) as caught:
        traffic_rows(load_spec(OWN), 10, 0)
    message = str(caught.value)
    assert message.startswith(f"data/{OWN}/snapshot.parquet: not found")
    assert "`mlops data init` or `dvc pull`" in message and "\n" not in message


def test_covariate_drift_shifts_numeric_features_within_the_spec(tree):
    spec = load_spec(CARDS)
    clean, drifted = (traffic_rows(spec, 1_000, 4, drift) for drift in ("none", "covariate"))
    for feature in spec.features:
        if feature.type in ("numeric", "integer"):
            assert drifted[feature.name].mean() > clean[feature.name].mean(), feature.name
    assert validate_frame(spec, drifted) == []
    assert drifted["merchant_category"].value_counts(normalize=True).max() < 0.2  # uniform now
    assert clean["merchant_category"].value_counts(normalize=True).max() > 0.2


def test_concept_drift_keeps_the_inputs_and_shuffles_the_target(tree):
    spec = load_spec(OWN)
    clean, drifted = (traffic_rows(spec, 400, 4, drift) for drift in ("none", "concept"))
    pd.testing.assert_frame_equal(clean[spec.feature_names], drifted[spec.feature_names])
    assert sorted(clean[TARGET]) == sorted(drifted[TARGET])
    assert (clean[TARGET] != drifted[TARGET]).mean() > 0.3


def test_new_categories_appear_in_categorical_features(tree):
    spec = load_spec(CARDS)
    rows = traffic_rows(spec, 1_000, 4, "new-categories")
    for feature in ("merchant_category", "channel", "country_risk"):
        assert 0.15 < (rows[feature] == NEW_CATEGORY).mean() < 0.35
    assert {p.column for p in validate_frame(spec, rows)} == {
        "merchant_category",
        "channel",
        "country_risk",
    }


def test_drift_a_spec_cannot_show_is_refused_in_one_line(tree):
    with pytest.raises(TrafficError) as caught:
        traffic_rows(load_spec(OWN), 10, 0, "new-categories")
    message = str(caught.value)
    assert message.startswith(f"drift 'new-categories' needs a categorical feature and {OWN}")
    assert "\n" not in message


def test_sample_prints_snapshot_rows(tree):
    from mlops.cli import app

    result = CliRunner().invoke(app, ["sample", "-s", OWN, "--rows", "3"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)["records"]
    assert len(records) == 3 and set(records[0]) == set(load_spec(OWN).feature_names)
