"""One MLflow run per monitor check in experiment `<service>-monitoring` (metrics over time);
the runs of other checks (rollout analyses) are made and finished the same way."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from monitoring.result import MonitorResult

log = logging.getLogger(__name__)


def experiment_name(service: str) -> str:
    return f"{service}-monitoring"


def start_run(client: MlflowClient, service: str) -> str:
    return create_run(client, experiment_name(service), f"monitor-{service}")


def create_run(client: MlflowClient, experiment: str, run_name: str) -> str:
    """A new run in `experiment` (created on first use); returns its id."""
    found = client.get_experiment_by_name(experiment)
    experiment_id = (
        found.experiment_id if found is not None else client.create_experiment(experiment)
    )
    return str(client.create_run(experiment_id, run_name=run_name).info.run_id)


def run_metrics(result: MonitorResult) -> dict[str, float]:
    m = result.measurements
    values: dict[str, float | None] = {
        "rows": float(m.rows),
        "labelled_rows": float(result.labelled_rows),
        "feature_drift_share": m.feature_drift_share,
        "drifted_features": float(m.drifted_columns),
        "prediction_drift": m.prediction_drift,
        "hours_since_promotion": m.hours_since_promotion,
    }
    if m.requests is not None:  # the production version's request figures
        values |= {
            "requests": float(m.requests.requests),
            "p50_latency_ms": m.requests.p50_latency_ms,
            "p99_latency_ms": m.requests.p99_latency_ms,
            "server_error_rate": m.requests.server_error_rate,
            "client_error_rate": m.requests.client_error_rate,
        }
    values |= {f"live_{name}": value for name, value in result.live_metrics.items()}
    values |= {f"drift_{c.column}": c.score for c in result.columns}
    return {k: float(v) for k, v in values.items() if v is not None}


def log_result(client: MlflowClient, run_id: str, result: MonitorResult) -> None:
    """Metrics, thresholds (params), decision (tags) and the report as an artifact."""
    m = result.measurements
    for key, value in run_metrics(result).items():
        client.log_metric(run_id, key, value)
    for key, value in _flat(asdict(result.thresholds)).items():
        client.log_param(run_id, f"threshold.{key}", value)
    client.log_param(run_id, "since", result.since.isoformat())
    production_slo = result.slo_checks[0][1]
    tags = {
        "service": result.service,
        "decision": result.action,
        "slo": production_slo.status.value,
        "production_version": m.production_version,
        "previous_version": m.previous_version or "",
    }
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    if result.report_html:
        client.log_artifact(run_id, str(result.report_html))


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested thresholds as dotted keys (`slo.p99_latency_ms`)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def finish_run(client: MlflowClient, run_id: str, files: list[Path], failed: bool = False) -> None:
    for path in files:
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FAILED" if failed else "FINISHED")
    log.info("MLflow run %s finished", run_id)
