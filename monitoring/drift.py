"""Evidently 0.7 drift: input features (DataDriftPreset) and the model output (ValueDrift).

Distance-based stattests are fixed (normed Wasserstein for numbers, Jensen-Shannon for
categories) so the spec's thresholds mean the same at every sample size; Evidently's
automatic choice switches to p-value tests below 1,000 rows, where a threshold inverts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from services.inference_log import PREDICTION, PROBABILITY
from services.spec import ServiceSpec

log = logging.getLogger(__name__)
NUM_METHOD = "wasserstein"
CAT_METHOD = "jensenshannon"


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    stattest: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    share: float
    drifted_count: int
    columns: tuple[ColumnDrift, ...]
    prediction: ColumnDrift | None  # None: no prediction column to compare
    snapshot: Any  # evidently Snapshot (save_html / dict)


def prediction_column(spec: ServiceSpec, *frames: pd.DataFrame) -> str | None:
    """The model output compared with the reference: the probability for binary services."""
    preferred = [PROBABILITY, PREDICTION] if spec.task == "binary" else [PREDICTION]
    for column in preferred:
        if all(column in frame.columns for frame in frames):
            return column
    return None


def _normalise(spec: ServiceSpec, frame: pd.DataFrame, extra: list[str]) -> pd.DataFrame:
    """Identical dtypes on both sides: numbers as float, categories and booleans as text."""
    columns: dict[str, pd.Series] = {}
    for feature in spec.features:
        col = frame[feature.name]
        if feature.type in ("numeric", "integer"):
            columns[feature.name] = pd.to_numeric(col, errors="coerce").astype("float64")
        else:
            columns[feature.name] = (
                col.astype(object)
                .where(col.notna(), None)
                .map(lambda v: None if v is None else str(v))
            )
    for name in extra:
        columns[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return pd.DataFrame(columns)


def _definition(spec: ServiceSpec, extra: list[str]) -> Any:
    from evidently import DataDefinition

    numeric = [f.name for f in spec.features if f.type in ("numeric", "integer")]
    categorical = [f.name for f in spec.features if f.type in ("categorical", "boolean")]
    return DataDefinition(numerical_columns=numeric + extra, categorical_columns=categorical)


def measure_drift(spec: ServiceSpec, current: pd.DataFrame, reference: pd.DataFrame) -> DriftResult:
    """Run the Evidently report; per-column scores, drifted share and prediction drift."""
    from evidently import Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    thresholds = spec.monitoring
    output = prediction_column(spec, current, reference)
    extra = [output] if output else []
    definition = _definition(spec, extra)
    metrics: list[Any] = [
        DataDriftPreset(
            columns=spec.feature_names,
            drift_share=thresholds.feature_drift_share,
            num_method=NUM_METHOD,
            cat_method=CAT_METHOD,
            threshold=thresholds.column_drift_threshold,
        )
    ]
    if output:
        metrics.append(
            ValueDrift(
                column=output, method=NUM_METHOD, threshold=thresholds.prediction_drift_threshold
            )
        )
    snapshot = Report(metrics).run(
        current_data=Dataset.from_pandas(_normalise(spec, current, extra), definition),
        reference_data=Dataset.from_pandas(_normalise(spec, reference, extra), definition),
    )
    return _parse(snapshot, spec.feature_names, output)


def _parse(snapshot: Any, features: list[str], output: str | None) -> DriftResult:
    by_column: dict[str, ColumnDrift] = {}
    share, count = 0.0, 0
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        kind = str(config.get("type", ""))
        if kind.endswith(":DriftedColumnsCount"):
            share, count = float(metric["value"]["share"]), int(metric["value"]["count"])
        elif kind.endswith(":ValueDrift"):
            score, threshold = float(metric["value"]), float(config["threshold"])
            by_column[config["column"]] = ColumnDrift(
                column=config["column"],
                stattest=str(config["method"]),
                score=score,
                threshold=threshold,
                drifted=score >= threshold,  # distance methods: larger = more drift
            )
    columns = tuple(by_column[name] for name in features if name in by_column)
    prediction = by_column.get(output) if output else None
    if len(columns) != len(features):
        log.warning("Evidently returned drift for %d of %d features", len(columns), len(features))
    return DriftResult(share, count, columns, prediction, snapshot)
