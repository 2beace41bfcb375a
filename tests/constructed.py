"""Constructed monitor results, for unit tests of what reports them (no MLflow, no Evidently)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitoring.decision import Measurements, Performance, Thresholds, decide
from monitoring.requests import RequestStats
from monitoring.result import MonitorResult
from monitoring.slo import SloTargets

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
THRESHOLDS = Thresholds(
    feature_drift_share=0.3,
    prediction_drift_threshold=0.1,
    column_drift_threshold=0.1,
    min_rows=500,
    revert_window_hours=72,
    performance_margin=0.05,
    slo=SloTargets(p99_latency_ms=100, error_rate=0.01, min_requests=200),
)
HEALTHY = Measurements(
    rows=2_000,
    feature_drift_share=0.0,
    drifted_columns=0,
    total_columns=13,
    prediction_drift=0.02,
    performance=Performance("roc_auc", True, live=0.90, registered=0.91, previous=0.90),
    production_version="2",
    previous_version="1",
    hours_since_promotion=2.0,
)


def stats(requests: int, p99_ms: float, server_errors: int = 0, client_errors: int = 0):
    """Request figures of a version: `requests` answered real-time requests but the errors."""
    answered = requests - server_errors - client_errors
    return RequestStats(requests, server_errors, client_errors, answered, p99_ms / 2, p99_ms)


def result(
    measurements: Measurements = HEALTHY,
    service: str = "fraud-detection",
    folder: Path | None = None,
) -> MonitorResult:
    """The monitor's result for `measurements`, decided with THRESHOLDS."""
    requests = {
        version: figures
        for version, figures in (
            (measurements.production_version, measurements.requests),
            (measurements.previous_version, measurements.previous_requests),
        )
        if version is not None and figures is not None
    }
    return MonitorResult(
        service=service,
        checked_at=NOW,
        since=NOW - timedelta(hours=2),
        thresholds=THRESHOLDS,
        measurements=measurements,
        decision=decide(measurements, THRESHOLDS),
        labelled_rows=measurements.rows,
        other_versions_rows=0,
        promoted_at=NOW - timedelta(hours=2),
        promoted_at_source="tag",
        requests=requests,
        output_dir=folder,
    )


def slow_after_promotion() -> Measurements:
    """v2 slower than its SLO, v1 well within it: the SLO revert."""
    return replace(HEALTHY, requests=stats(400, 250.0), previous_requests=stats(400, 5.0))
