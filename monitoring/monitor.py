"""Monitor one service: window + reference -> drift and performance -> decision -> outputs
(report, summaries, MLflow run) -> optionally a retrain or revert pull request.

Window: `since` given explicitly is used as is; by default the last 24 hours, but never
before the production version was promoted (its `promoted_at` tag, else its registration
time): traffic served before it is not evidence about it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from monitoring import report, tracking
from monitoring.decision import Action, Measurements, Performance, Thresholds, decide
from monitoring.drift import measure_drift
from monitoring.performance import live_metrics
from monitoring.production import Production, load_production, load_reference
from monitoring.pull_requests import PullRequestOpener, opener_from_env
from monitoring.requests import baseline_start, read_requests, stats_by_version
from monitoring.result import MonitorResult
from monitoring.window import DEFAULT_SINCE, Window, load_window, parse_since
from services.model_cache import load_cached
from services.registry import connect
from services.settings import get_settings, repo_root
from services.spec import ServiceSpec, load_spec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorOptions:
    since: str | None = None  # None: DEFAULT_SINCE, floored at the promotion time
    open_pr: bool = False
    opener: PullRequestOpener | None = None  # None: chosen from the environment
    now: datetime | None = None


def window_start(since: str | None, production: Production, now: datetime) -> datetime:
    if since is not None:
        return parse_since(since, now)
    return max(parse_since(DEFAULT_SINCE, now), production.promoted_at)


def _performance(spec: ServiceSpec, production: Production, live: dict[str, float]) -> Performance:
    metric = spec.evaluation.metric
    previous = production.previous
    return Performance(
        metric=metric,
        higher_is_better=spec.evaluation.higher_is_better,
        live=live.get(metric),
        registered=production.current.metrics.get(metric),
        previous=None if previous is None else previous.metrics.get(metric),
    )


def monitor_service(service: str, options: MonitorOptions | None = None) -> MonitorResult:
    """Check one service end to end; raises only on errors (missing production, I/O)."""
    options = options or MonitorOptions()
    now = options.now or datetime.now(UTC)
    settings = get_settings()
    catalogue = load_spec(service)  # thresholds, and what a retrain pull request shapes
    thresholds = Thresholds.from_spec(catalogue.monitoring, catalogue.slo)
    client = connect()
    production = load_production(client, service)
    # drift and quality are measured on the columns, target and metric the production
    # version was trained with (service.yaml shapes the next version, not this one)
    spec = load_cached(service, production.current.version).spec
    since = window_start(options.since, production, now)
    window = load_window(settings.inference_log_uri, service, since, production.current.version)
    log.info(
        "%s: %d rows (%d labelled) since %s", service, window.rows, len(window.labelled), since
    )
    records = read_requests(
        settings.inference_log_uri, service, baseline_start(since, production.promoted_at)
    )
    requests = stats_by_version(records, production.current.version, since)

    folder = report.output_dir(settings.home, service, now)
    drift, live = None, {}
    if window.rows >= thresholds.min_rows:
        reference = load_reference(settings.tracking_uri, production.current.run_id)
        drift = measure_drift(spec, window.frame, reference)
        if len(window.labelled) >= thresholds.min_rows:
            live = live_metrics(spec, window.labelled)
    measurements = Measurements(
        rows=window.rows,
        feature_drift_share=None if drift is None else drift.share,
        drifted_columns=0 if drift is None else drift.drifted_count,
        total_columns=len(spec.features),
        prediction_drift=None
        if drift is None or drift.prediction is None
        else drift.prediction.score,
        performance=_performance(spec, production, live),
        production_version=production.current.version,
        previous_version=None if production.previous is None else production.previous.version,
        hours_since_promotion=production.hours_since_promotion(now),
        requests=requests.get(production.current.version),
        previous_requests=None
        if production.previous is None
        else requests.get(production.previous.version),
    )
    result = MonitorResult(
        service=service,
        checked_at=now,
        since=since,
        thresholds=thresholds,
        measurements=measurements,
        decision=decide(measurements, thresholds),
        labelled_rows=len(window.labelled),
        other_versions_rows=window.other_versions_rows,
        promoted_at=production.promoted_at,
        promoted_at_source=production.promoted_at_source,
        alias_note=production.alias_note,
        live_metrics=live,
        requests=requests,
        columns=() if drift is None else drift.columns,
        prediction=None if drift is None else drift.prediction,
        output_dir=folder,
    )
    if drift is not None:
        result.report_html = report.save_html(drift.snapshot, folder)
    run_id = tracking.start_run(client, service)
    result.mlflow_run_id = run_id
    tracking.log_result(client, run_id, result)
    if options.open_pr:
        _pull_request(catalogue, result, window, options)
    report.write_summaries(result, folder)
    tracking.finish_run(
        client, run_id, [result.summary_json, result.summary_md], failed=result.pull_request_error
    )
    log.info("%s: decision %s", service, result.action)
    return result


def _pull_request(
    spec: ServiceSpec, result: MonitorResult, window: Window, options: MonitorOptions
) -> None:
    """Open or update the pull request the decision calls for; errors are recorded."""
    from monitoring.retrain import build_retrain_change
    from monitoring.revert import build_revert_change

    action = result.decision.action
    if action not in (Action.RETRAIN, Action.REVERT):
        result.pull_request_note = f"none ({action.value})"
        return
    evidence = report.markdown(result, heading="###")
    m = result.measurements
    try:
        if action is Action.RETRAIN:
            title = (
                f"Retrain {spec.name}: input drift in {m.drifted_columns} of "
                f"{m.total_columns} features"
            )
            if window.labelled.empty:
                result.pull_request_note = "no labelled rows in the window to add; no pull request"
                return
            change = build_retrain_change(
                spec, window.labelled, evidence, repo_root(), title
            ).change
        else:
            assert m.previous_version is not None  # guaranteed by the revert rule
            revert = build_revert_change(
                spec.name, m.production_version, m.previous_version, evidence, repo_root()
            )
            if revert is None:
                result.pull_request_note = f"manifest already serves v{m.previous_version}"
                return
            change = revert
        opener = options.opener or opener_from_env()
        result.pull_request = opener.open_or_update(change)
    except Exception as exc:  # recorded in the summary; the CLI exits non-zero
        log.exception("%s: pull request failed", spec.name)
        result.pull_request_note = f"failed: {exc}"
        result.pull_request_error = True


def output_paths(result: MonitorResult) -> list[Path]:
    return [p for p in (result.report_html, result.summary_json, result.summary_md) if p]
