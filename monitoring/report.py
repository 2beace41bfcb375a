"""Monitor outputs on disk: the Evidently HTML, a JSON summary and a markdown summary.

Layout: <MLOPS_HOME>/monitoring/<service>/<UTC stamp>/{report.html, summary.json, summary.md}
(MLOPS_HOME defaults to the git-ignored `.mlops/`). The markdown goes to
$GITHUB_STEP_SUMMARY when that variable is set, and into pull-request bodies.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from monitoring.result import MonitorResult

log = logging.getLogger(__name__)
REPORT_HTML = "report.html"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
MONITORING_AREA = "monitoring"  # folder of the monitor's runs under MLOPS_HOME


def output_dir(home: Path, service: str, when: datetime, area: str = MONITORING_AREA) -> Path:
    """A fresh folder per run under `<home>/<area>/<service>/` (a suffix keeps two runs in the
    same second apart)."""
    base = home / area / service / when.strftime("%Y%m%dT%H%M%SZ")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def save_html(snapshot: Any, folder: Path) -> Path:
    path = folder / REPORT_HTML
    snapshot.save_html(str(path))
    return path


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(result: MonitorResult, heading: str = "##") -> str:
    """Thresholds vs measured values, decision and reasons, per-feature drift table."""
    m, t, p = result.measurements, result.thresholds, result.measurements.performance
    lines = [
        f"{heading} Monitor `{result.service}`: **{result.action}**",
        "",
        f"Production v{m.production_version} (previous: "
        f"{'v' + m.previous_version if m.previous_version else 'none'}), "
        f"window {result.since:%Y-%m-%d %H:%M} to {result.checked_at:%Y-%m-%d %H:%M} UTC.",
        "",
        "| check | threshold | measured |",
        "| --- | --- | --- |",
        f"| rows | >= {t.min_rows} | {m.rows} ({result.labelled_rows} labelled) |",
        f"| feature drift share | >= {t.feature_drift_share:g} "
        f"| {_num(m.feature_drift_share, 2)} ({m.drifted_columns}/{m.total_columns}) |",
        f"| prediction drift | >= {t.prediction_drift_threshold:g} "
        f"| {_num(m.prediction_drift, 3)} |",
        f"| live {p.metric} vs previous | margin {t.performance_margin:g} "
        f"| {_num(p.live)} vs {_num(p.previous)} (registered {_num(p.registered)}) |",
        f"| hours since promotion | <= {t.revert_window_hours:g} "
        f"| {_num(m.hours_since_promotion, 1)} |",
        "",
        *_slo_lines(result),
        "",
        "**Reasons**",
        "",
        *[f"- {reason}" for reason in result.decision.reasons],
        *[f"- note: {note}" for note in result.decision.notes],
    ]
    if result.columns:
        lines += [
            "",
            "| feature | stattest | score | threshold | drifted |",
            "| --- | --- | --- | --- | --- |",
        ]
        for c in sorted(result.columns, key=lambda c: -c.score):
            flag = "**yes**" if c.drifted else "no"
            lines.append(
                f"| {c.column} | {c.stattest} | {c.score:.3f} | {c.threshold:g} | {flag} |"
            )
    if result.live_metrics:
        values = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.live_metrics.items()))
        lines += ["", f"Live metrics on {result.labelled_rows} labelled rows: {values}."]
    lines += ["", *_output_lines(result)]
    return "\n".join(lines).rstrip() + "\n"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _slo_lines(result: MonitorResult) -> list[str]:
    """Requests, latency and error rates per version, next to the SLOs."""
    slo = result.thresholds.slo
    lines = [
        "",
        f"SLOs: p99 latency <= {slo.p99_latency_ms:g} ms (answered real-time requests), "
        f"5xx rate <= {slo.error_rate:.2%}, judged from {slo.min_requests} requests.",
        "",
        "| version | requests | p50 ms | p99 ms | 5xx rate | 4xx rate | SLO |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for role, check in result.slo_checks:
        s = check.stats
        figures = (
            ["0", "n/a", "n/a", "n/a", "n/a"]
            if s is None
            else [
                str(s.requests),
                _ms(s.p50_latency_ms),
                _ms(s.p99_latency_ms),
                f"{s.server_error_rate:.2%}",
                f"{s.client_error_rate:.2%}",
            ]
        )
        verdict = check.status.value
        if check.breaches:
            verdict += ": " + ", ".join(check.breaches)
        lines.append(f"| v{check.version} ({role}) | {' | '.join(figures)} | {verdict} |")
    return lines


def _output_lines(result: MonitorResult) -> list[str]:
    out = []
    if result.report_html:
        out.append(f"- Evidently report: `{result.report_html}`")
    if result.mlflow_run_id:
        out.append(
            f"- MLflow run: `{result.mlflow_run_id}` (experiment `{result.service}-monitoring`)"
        )
    if result.pull_request:
        out.append(f"- Pull request: {result.pull_request.url}")
    if result.pull_request_note:
        out.append(f"- Pull request: {result.pull_request_note}")
    return out


def write_summaries(result: MonitorResult, folder: Path) -> None:
    """summary.json + summary.md in `folder`; the markdown also goes to $GITHUB_STEP_SUMMARY."""
    result.summary_json = folder / SUMMARY_JSON
    result.summary_md = folder / SUMMARY_MD
    text = markdown(result)
    result.summary_md.write_text(text)
    result.summary_json.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a") as handle:
            handle.write(text + "\n")
    log.info("%s: summary written to %s", result.service, result.summary_json)
