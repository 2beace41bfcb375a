"""Monitor data handling without servers: the log window, the next snapshot, Evidently drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import measure_drift, prediction_column
from monitoring.snapshot import labelled_rows, merge_snapshot
from monitoring.window import load_window, parse_since
from services.datagen import generate
from services.inference_log import (
    ENDPOINT,
    FEEDBACK_KIND,
    LABEL,
    MODEL_VERSION,
    PREDICTION,
    PREDICTIONS_KIND,
    PROBABILITY,
    REQUEST_ID,
    TIMESTAMP,
    write_part,
)
from services.schema import frame_to_records, validate_frame
from services.spec import load_spec

pytestmark = pytest.mark.unit
SERVICE = "fraud-detection"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", NOW - timedelta(hours=24)),
        ("90m", NOW - timedelta(minutes=90)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-03-09T06:00:00", datetime(2026, 3, 9, 6, tzinfo=UTC)),
        ("2026-03-09T08:00:00+02:00", datetime(2026, 3, 9, 6, tzinfo=UTC)),
        ("2026-03-09T06:00:00Z", datetime(2026, 3, 9, 6, tzinfo=UTC)),
    ],
)
def test_since_accepts_durations_and_iso_times(text, expected):
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "24", "h24", "-3h"])
def test_since_rejects_anything_else(text):
    with pytest.raises(ValueError, match="expected a duration"):
        parse_since(text, NOW)


def _predictions(ids: list[str], stamp: datetime, version: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            REQUEST_ID: ids,
            TIMESTAMP: pd.Timestamp(stamp),
            "service": SERVICE,
            MODEL_VERSION: version,
            ENDPOINT: "predict",
            "amount": np.arange(len(ids), dtype=float),
            PREDICTION: 0,
            PROBABILITY: 0.1,
        }
    )


def test_window_joins_latest_label_and_keeps_the_production_version(tmp_path):
    uri = str(tmp_path / "log")
    write_part(
        uri, SERVICE, PREDICTIONS_KIND, _predictions(["old"], NOW - timedelta(days=2), "1"), "w"
    )
    write_part(uri, SERVICE, PREDICTIONS_KIND, _predictions(["a", "b", "c"], NOW, "2"), "w")
    write_part(uri, SERVICE, PREDICTIONS_KIND, _predictions(["d"], NOW, "1"), "w")  # other version
    feedback = pd.DataFrame(
        {
            REQUEST_ID: ["a", "a", "b"],
            TIMESTAMP: [NOW, NOW + timedelta(minutes=5), NOW],
            "service": SERVICE,
            LABEL: [0, 1, 0],
        }
    )
    write_part(uri, SERVICE, FEEDBACK_KIND, feedback, "w")

    window = load_window(uri, SERVICE, NOW - timedelta(hours=1), "2")
    assert sorted(window.frame[REQUEST_ID]) == ["a", "b", "c"]
    assert window.other_versions_rows == 1
    labels = dict(zip(window.frame[REQUEST_ID], window.frame[LABEL], strict=True))
    assert labels["a"] == 1 and labels["b"] == 0 and np.isnan(labels["c"])
    assert len(window.labelled) == 2


def test_window_of_an_empty_log_has_no_rows(tmp_path):
    window = load_window(str(tmp_path / "none"), SERVICE, NOW, "1")
    assert window.rows == 0 and window.labelled.empty


def test_next_snapshot_drops_invalid_and_duplicate_rows():
    spec = load_spec(SERVICE)
    previous = generate(spec, 500, seed=1)
    live = generate(spec, 100, seed=2, drift="covariate")
    logged = pd.DataFrame(frame_to_records(spec, live[spec.feature_names]))
    logged[LABEL] = live[spec.target].astype(float)
    logged.loc[0, "amount"] = -1.0  # below the spec's minimum
    logged.loc[1, "merchant_category"] = "crypto_exchange"  # not a known category
    logged.loc[2, LABEL] = 7  # not a binary label
    logged.loc[3, LABEL] = np.nan  # no label
    again = pd.DataFrame(frame_to_records(spec, previous[spec.feature_names].head(2)))
    again[LABEL] = previous[spec.target].head(2).astype(float)
    logged = pd.concat([logged, logged.iloc[[10, 11]], again], ignore_index=True)

    merged, stats = merge_snapshot(spec, previous, labelled_rows(spec, logged))
    assert stats.labelled_rows == 104
    assert stats.invalid_rows == 4
    assert stats.duplicate_rows == 4  # two repeated in the window, two already in the snapshot
    assert stats.added_rows == 96 and len(merged) == 596 == stats.total_rows
    assert merged.head(500).equals(previous)  # the previous snapshot is kept as it was
    assert list(merged.columns) == list(previous.columns)
    assert (merged.dtypes == previous.dtypes).all()
    assert validate_frame(spec, merged) == []


def test_drift_uses_distance_tests_at_small_sizes():
    spec = load_spec(SERVICE)
    reference = generate(spec, 2_000, seed=1).assign(**{PROBABILITY: 0.1})
    healthy = generate(spec, 300, seed=2).assign(**{PROBABILITY: 0.1})
    shifted = generate(spec, 300, seed=3, drift="covariate").assign(**{PROBABILITY: 0.6})

    calm = measure_drift(spec, healthy, reference)
    assert calm.share < 0.3 and calm.prediction is not None and not calm.prediction.drifted
    assert {c.stattest for c in calm.columns} == {"wasserstein", "jensenshannon"}
    assert len(calm.columns) == len(spec.features)

    drifted = measure_drift(spec, shifted, reference)
    assert drifted.share >= 0.3 and drifted.drifted_count == sum(c.drifted for c in drifted.columns)
    assert drifted.prediction.column == PROBABILITY and drifted.prediction.drifted
    assert all(c.drifted == (c.score >= c.threshold) for c in drifted.columns)


def test_prediction_column_prefers_probability_for_binary():
    fraud, demand = load_spec(SERVICE), load_spec("demand-forecast")
    both = pd.DataFrame(columns=[PREDICTION, PROBABILITY])
    only_prediction = pd.DataFrame(columns=[PREDICTION])
    assert prediction_column(fraud, both, both) == PROBABILITY
    assert prediction_column(fraud, both, only_prediction) == PREDICTION
    assert prediction_column(demand, both, both) == PREDICTION
    assert prediction_column(demand, pd.DataFrame(), both) is None
