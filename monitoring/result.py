"""The outcome of monitoring one service, and its JSON form (the saved summary)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from monitoring.decision import Decision, Measurements, Thresholds, slo_checks
from monitoring.drift import ColumnDrift
from monitoring.pull_requests import PullRequestResult
from monitoring.requests import RequestStats
from monitoring.slo import SloCheck, judge


@dataclass
class MonitorResult:
    service: str
    checked_at: datetime
    since: datetime
    thresholds: Thresholds
    measurements: Measurements
    decision: Decision
    labelled_rows: int
    other_versions_rows: int
    promoted_at: datetime
    promoted_at_source: str
    alias_note: str | None = None  # the `production` alias disagrees with the manifest on main
    live_metrics: dict[str, float] = field(default_factory=dict)
    requests: dict[str, RequestStats] = field(default_factory=dict)  # per model version
    columns: tuple[ColumnDrift, ...] = ()
    prediction: ColumnDrift | None = None
    output_dir: Path | None = None
    report_html: Path | None = None
    summary_json: Path | None = None
    summary_md: Path | None = None
    mlflow_run_id: str | None = None
    pull_request: PullRequestResult | None = None
    pull_request_note: str | None = None  # why no pull request, or what went wrong
    pull_request_error: bool = False

    @property
    def action(self) -> str:
        return self.decision.action.value

    @property
    def slo_checks(self) -> list[tuple[str, SloCheck]]:
        """(role, check) of production, previous and any other version with requests."""
        m, targets = self.measurements, self.thresholds.slo
        production, previous = slo_checks(m, self.thresholds)
        checks = [("production", production)]
        if previous is not None:
            checks.append(("previous", previous))
        named = {m.production_version, m.previous_version}
        checks += [
            ("other", judge(version, stats, targets))
            for version, stats in self.requests.items()
            if version not in named
        ]
        return checks

    def to_json(self) -> dict[str, Any]:
        m = self.measurements
        return {
            "service": self.service,
            "checked_at": self.checked_at.isoformat(),
            "window": {"since": self.since.isoformat(), "until": self.checked_at.isoformat()},
            "production": {
                "version": m.production_version,
                "previous_version": m.previous_version,
                "promoted_at": self.promoted_at.isoformat(),
                "promoted_at_source": self.promoted_at_source,
                "hours_since_promotion": m.hours_since_promotion,
                "source": "the manifest on main",
                "alias_disagrees": self.alias_note,
            },
            "thresholds": asdict(self.thresholds),
            "measured": {
                "rows": m.rows,
                "labelled_rows": self.labelled_rows,
                "rows_of_other_versions": self.other_versions_rows,
                "feature_drift_share": m.feature_drift_share,
                "drifted_features": m.drifted_columns,
                "features": m.total_columns,
                "prediction_drift": m.prediction_drift,
                "performance": asdict(m.performance),
                "live_metrics": self.live_metrics,
            },
            "slo": {
                "targets": asdict(self.thresholds.slo),
                "breaches": list(self.decision.slo_breaches),
                "versions": [_slo_json(role, check) for role, check in self.slo_checks],
            },
            "columns": [asdict(c) for c in self.columns],
            "prediction_drift": None if self.prediction is None else asdict(self.prediction),
            "decision": self.action,
            "reasons": list(self.decision.reasons),
            "notes": list(self.decision.notes),
            "outputs": {
                "report_html": _str(self.report_html),
                "summary_json": _str(self.summary_json),
                "summary_md": _str(self.summary_md),
                "mlflow_run_id": self.mlflow_run_id,
            },
            "pull_request": None if self.pull_request is None else asdict(self.pull_request),
            "pull_request_note": self.pull_request_note,
        }


def _slo_json(role: str, check: SloCheck) -> dict[str, Any]:
    stats = check.stats
    figures: dict[str, Any] = {}
    if stats is not None:
        figures = asdict(stats) | {
            "server_error_rate": stats.server_error_rate,
            "client_error_rate": stats.client_error_rate,
        }
    return {
        "version": check.version,
        "role": role,
        "status": check.status.value,
        **figures,
        "breaches": check.breaches,
        "met": check.met,
    }


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
