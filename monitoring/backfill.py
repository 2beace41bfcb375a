"""Write simulated traffic straight into the inference log (no serving needed).

For benchmarks, tests and offline demos: rows come from the service's generator (or its
snapshot, services/traffic.py), outputs from any model callable (e.g. an MLflow pyfunc), in
the same format serving writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from services.datagen import Drift
from services.inference_log import (
    ENDPOINT,
    FEEDBACK_KIND,
    LABEL,
    MODEL_VERSION,
    PREDICTIONS_KIND,
    REQUEST_ID,
    SERVICE,
    TIMESTAMP,
    write_part,
)
from services.spec import ServiceSpec
from services.traffic import traffic_rows

Predict = Callable[[pd.DataFrame], pd.DataFrame]  # features -> prediction (+ probability)


@dataclass(frozen=True)
class Backfill:
    rows: int
    predictions_part: str
    feedback_part: str | None


def log_traffic(
    spec: ServiceSpec,
    predict: Predict,
    uri: str,
    model_version: str,
    rows: int,
    seed: int,
    drift: Drift = "none",
    feedback: bool = True,
    when: datetime | None = None,
    endpoint: str = "predict",
) -> Backfill:
    """Make `rows` rows, predict them, and write one predictions part (and one feedback part)."""
    stamp = pd.Timestamp(when or datetime.now(UTC))
    data = traffic_rows(spec, rows, seed, drift)
    features = data[spec.feature_names]
    outputs = predict(features).reset_index(drop=True)
    ids = [uuid.uuid4().hex for _ in range(rows)]
    meta = pd.DataFrame(
        {
            REQUEST_ID: ids,
            TIMESTAMP: stamp,
            SERVICE: spec.name,
            MODEL_VERSION: str(model_version),
            ENDPOINT: endpoint,
        }
    )
    frame = pd.concat([meta, features.reset_index(drop=True), outputs], axis=1)
    part = write_part(uri, spec.name, PREDICTIONS_KIND, frame, writer="backfill")
    feedback_part = None
    if feedback:
        labels = pd.DataFrame(
            {
                REQUEST_ID: ids,
                TIMESTAMP: stamp,
                SERVICE: spec.name,
                LABEL: data[spec.target].astype(float).to_numpy(),
            }
        )
        feedback_part = write_part(uri, spec.name, FEEDBACK_KIND, labels, writer="backfill")
    return Backfill(rows, part, feedback_part)
