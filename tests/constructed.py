"""Constructed monitor results, for unit tests of what reports them (no MLflow, no Evidently),
and constructed rollout windows, for the rollout gates."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitoring.decision import Measurements, Performance, Thresholds, decide
from monitoring.requests import RequestStats
from monitoring.result import MonitorResult
from monitoring.rollout_gates import judge_step
from monitoring.rollout_result import RolloutAnalysis
from monitoring.slo import SloTargets
from services.inference_log import (
    CANARY,
    ENDPOINT,
    LABEL,
    LATENCY_MS,
    MODEL_VERSION,
    PREDICTION,
    PROBABILITY,
    REALTIME_ENDPOINTS,
    REQUEST,
    REQUEST_ID,
    ROWS,
    SERVICE,
    SHADOW,
    STABLE,
    STATUS,
    TIMESTAMP,
    VARIANT,
)
from services.spec import Rollout, RolloutStep, ServiceSpec, load_spec
from serving.routing import RolloutTraffic

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


# Rollout windows: request records and prediction rows of one step, for the rollout gates.
ROLLOUT_SINCE = NOW - timedelta(minutes=30)


def with_rollout(service: str = "fraud-detection", **policy: Any) -> ServiceSpec:
    """The catalogue spec of `service` with a shadow-then-canary rollout policy (defaults:
    200 requests and 10 minutes per step, the default gates)."""
    spec = load_spec(service)
    steps = (RolloutStep(mode=SHADOW, weight=10), RolloutStep(mode=CANARY, weight=10))
    rollout = Rollout(steps=steps, **policy)
    return spec.model_copy(
        update={"promotion": spec.promotion.model_copy(update={"rollout": rollout})}
    )


def traffic(mode: str = CANARY, since: datetime | None = ROLLOUT_SINCE) -> RolloutTraffic:
    """v3 on trial (over stable v2) at 10% since `since`."""
    return RolloutTraffic(candidate="3", mode=mode, weight=10, step=1, since=since)


def request_records(
    version: str,
    variant: str,
    latencies_ms: np.ndarray,
    server_errors: int = 0,
    ids: list[str] | None = None,
) -> pd.DataFrame:
    """One /predict record per latency; the first `server_errors` failed with a 500."""
    n = len(latencies_ms)
    return pd.DataFrame(
        {
            REQUEST: ids or [f"{variant}-{i}" for i in range(n)],
            TIMESTAMP: [NOW - timedelta(minutes=1)] * n,
            SERVICE: "fraud-detection",
            ENDPOINT: REALTIME_ENDPOINTS[0],
            MODEL_VERSION: version,
            VARIANT: variant,
            STATUS: [500] * server_errors + [200] * (n - server_errors),
            ROWS: [0] * server_errors + [1] * (n - server_errors),
            LATENCY_MS: np.asarray(latencies_ms, dtype=float),
        }
    )


def prediction_rows(
    version: str,
    variant: str,
    outputs: np.ndarray,
    labels: np.ndarray | None = None,
    ids: list[str] | None = None,
    binary: bool = True,
) -> pd.DataFrame:
    """Logged rows of one variant: binary outputs are probabilities (class at 0.5),
    regression outputs predictions; labels NaN where none came."""
    n = len(outputs)
    frame = pd.DataFrame(
        {
            REQUEST_ID: ids or [f"{variant}-{i}-0" for i in range(n)],
            VARIANT: variant,
            MODEL_VERSION: version,
            PREDICTION: (np.asarray(outputs) >= 0.5).astype(int) if binary else outputs,
            LABEL: np.full(n, np.nan) if labels is None else np.asarray(labels, dtype=float),
        }
    )
    return frame.assign(**{PROBABILITY: outputs}) if binary else frame


def fast_latencies(n: int, seed: int = 0) -> np.ndarray:
    """Latencies of a healthy version: uniform between 4 and 6 ms."""
    return np.random.default_rng(seed).uniform(4.0, 6.0, n)


def fraud_scores(n: int, seed: int) -> np.ndarray:
    """Fraud-like probabilities: mostly low (mean 0.1)."""
    return np.random.default_rng(seed).beta(1, 9, n)


def judged_step(
    mode: str = CANARY,
    candidate_latency: np.ndarray | None = None,
    stable_latency: np.ndarray | None = None,
    candidate_errors: int = 0,
    stable_errors: int = 0,
    candidate_rows: pd.DataFrame | None = None,
    stable_rows: pd.DataFrame | None = None,
    since: datetime | None = ROLLOUT_SINCE,
    spec: ServiceSpec | None = None,
) -> RolloutAnalysis:
    """The analysis of a step of v3 over v2 (fraud-detection with a rollout policy unless
    `spec`): 2,000 stable and (by default) 400 candidate requests at ~5 ms, rows of both from
    the same score distribution."""
    variant = CANARY if mode == CANARY else SHADOW
    latency = fast_latencies(400, 1) if candidate_latency is None else candidate_latency
    records = pd.concat(
        [
            request_records(
                "2",
                STABLE,
                fast_latencies(2_000) if stable_latency is None else stable_latency,
                stable_errors,
            ),
            request_records("3", variant, latency, candidate_errors),
        ],
        ignore_index=True,
    )
    if stable_rows is None:
        stable_rows = prediction_rows("2", STABLE, fraud_scores(2_000, 2))
    if candidate_rows is None:
        candidate_rows = prediction_rows("3", variant, fraud_scores(400, 3))
    rows = pd.concat([stable_rows, candidate_rows], ignore_index=True)
    spec = spec or with_rollout("fraud-detection")
    return judge_step(spec, traffic(mode, since), "2", records, rows, NOW)
