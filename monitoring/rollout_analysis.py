"""The analysis of a rollout's current step: its window read from the inference log, judged by
monitoring.rollout_gates, reported as JSON and markdown and logged to MLflow.

The window starts when the step did (`traffic.since`; without one, the time of the last commit
that changed the manifest: every step is a manifest commit). Reports go under
`<MLOPS_HOME>/rollouts/<service>/<UTC stamp>/`, next to the monitor's `monitoring/` folder;
runs go to experiment `rollouts-<service>`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient

from monitoring import report, tracking
from monitoring.requests import read_requests
from monitoring.rollout_gates import judge_step
from monitoring.rollout_result import GateResult, RolloutAnalysis
from monitoring.window import latest_labels, read_since
from services.gitutil import git, toplevel
from services.inference_log import (
    FEEDBACK_KIND,
    LABEL,
    PREDICTION,
    PREDICTION_COLUMNS,
    PREDICTIONS_KIND,
    REQUEST_ID,
    VARIANT,
)
from services.registry_keys import (
    ROLLOUT_CANDIDATE_TAG,
    ROLLOUT_DECISION_TAG,
    ROLLOUT_MODE_TAG,
    ROLLOUT_SINCE_PARAM,
    ROLLOUT_STABLE_TAG,
    ROLLOUT_STEP_PARAM,
    ROLLOUT_THRESHOLD_PARAM_PREFIX,
    ROLLOUT_VERDICT_TAG_PREFIX,
    ROLLOUT_WEIGHT_PARAM,
)
from services.spec import load_spec
from serving.manifest import manifest_path
from serving.routing import RolloutTraffic

log = logging.getLogger(__name__)
ANALYSIS_JSON = "rollout-analysis.json"
ANALYSIS_MD = "rollout-analysis.md"
REPORTS_AREA = "rollouts"  # under MLOPS_HOME, beside the monitor's reports


def experiment_name(service: str) -> str:
    return f"rollouts-{service}"


def step_start(manifest: Path) -> datetime:
    """When the last commit on the branch's own line that changed `manifest` was made (UTC):
    for a merged pull request, the merge, not the commit on its branch."""
    repo = toplevel(manifest)
    relative = manifest.resolve().relative_to(repo).as_posix()
    stamp = git("log", "-1", "--first-parent", "--format=%cI", "--", relative, cwd=repo)
    if not stamp:
        raise ValueError(f"{relative}: no commit changed it, so the step's start is unknown")
    return datetime.fromisoformat(stamp).astimezone(UTC)


def read_predictions(uri: str, service: str, since: datetime) -> pd.DataFrame:
    """Prediction rows since `since`, one per REQUEST_ID and variant (a shadow's rows repeat
    the stable rows' ids), with the latest label of each id (NaN: none yet)."""
    rows = read_since(uri, service, PREDICTIONS_KIND, since)
    missing = [c for c in (*PREDICTION_COLUMNS, PREDICTION) if c not in rows]
    rows = rows.reindex(columns=[*rows.columns, *missing])
    rows = rows.drop_duplicates([REQUEST_ID, VARIANT], keep="last")
    labels = latest_labels(read_since(uri, service, FEEDBACK_KIND, since))
    rows = rows.drop(columns=[LABEL], errors="ignore").astype({REQUEST_ID: "object"})
    return rows.merge(labels.astype({REQUEST_ID: "object"}), on=REQUEST_ID, how="left")


def analyse(
    service: str,
    traffic: RolloutTraffic,
    stable: str,
    uri: str,
    now: datetime | None = None,
    manifest: Path | None = None,
) -> RolloutAnalysis:
    """Judge the current step of `service`'s rollout of `traffic.candidate` over `stable` from
    the inference log at `uri` (the step's start: `traffic.since`, else the last commit of
    `manifest`, by default the production manifest)."""
    now = now or datetime.now(UTC)
    since = traffic.since or step_start(manifest or manifest_path())
    records = read_requests(uri, service, since)
    predictions = read_predictions(uri, service, since)
    log.info(
        "%s: rollout of v%s step %s since %s: %d request records, %d rows",
        service,
        traffic.candidate,
        traffic.step,
        since.isoformat(),
        len(records),
        len(predictions),
    )
    step = traffic.model_copy(update={"since": since})
    return judge_step(load_spec(service), step, stable, records, predictions, now)


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(analysis: RolloutAnalysis) -> dict[str, Any]:
    """The analysis as plain JSON values (times in ISO 8601)."""
    return json.loads(json.dumps(asdict(analysis), default=_iso))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(gate: GateResult) -> str:
    method = gate.method if gate.confidence is None else f"{gate.method} ({gate.confidence:.0%})"
    cells = (gate.name, gate.verdict, gate.text, gate.threshold, method)
    return "| " + " | ".join(_cell(str(c)) for c in cells) + " |"


def markdown(analysis: RolloutAnalysis, heading: str = "##") -> str:
    """Heading with the decision, a table of the gates with their figures, the reasons."""
    a = analysis
    step = "" if a.step is None else f" step {a.step}"
    since = "unknown" if a.since is None else f"{a.since:%Y-%m-%d %H:%M}"
    lines = [
        f"{heading} Rollout `{a.service}`{step} ({a.mode}, {a.weight:g}%): **{a.decision}**",
        "",
        f"Candidate v{a.candidate} against stable v{a.stable}, step since {since} UTC, "
        f"analysed {a.analysed_at:%Y-%m-%d %H:%M} UTC.",
        "",
        "| gate | verdict | figures | threshold | method |",
        "| --- | --- | --- | --- | --- |",
        *[_row(g) for g in (a.evidence, *a.gates)],
        "",
        "**Reasons**",
        "",
        *[f"- {reason}" for reason in a.reasons],
    ]
    return "\n".join(lines) + "\n"


def report_dir(home: Path, analysis: RolloutAnalysis) -> Path:
    """A fresh folder for the analysis' files: `<home>/rollouts/<service>/<UTC stamp>/`."""
    return report.output_dir(home, analysis.service, analysis.analysed_at, REPORTS_AREA)


def save(analysis: RolloutAnalysis, folder: Path) -> list[Path]:
    """rollout-analysis.json and rollout-analysis.md in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = folder / ANALYSIS_JSON, folder / ANALYSIS_MD
    saved[0].write_text(json.dumps(to_json(analysis), indent=2) + "\n")
    saved[1].write_text(markdown(analysis))
    log.info("%s: rollout analysis written to %s", analysis.service, folder)
    return list(saved)


def run_metrics(analysis: RolloutAnalysis) -> dict[str, float]:
    """Every figure as `<gate>.<figure>`."""
    gates = (analysis.evidence, *analysis.gates)
    return {f"{g.name}.{key}": float(value) for g in gates for key, value in g.figures.items()}


def log_to_mlflow(client: MlflowClient, analysis: RolloutAnalysis, files: list[Path]) -> str:
    """One run in experiment `rollouts-<service>`: figures as metrics, the step and thresholds
    as params, decision, versions and verdicts as tags, `files` as artifacts; its id."""
    a = analysis
    run_id = tracking.create_run(
        client, experiment_name(a.service), f"rollout-{a.service}-v{a.candidate}"
    )
    for key, value in run_metrics(a).items():
        client.log_metric(run_id, key, value)
    params: dict[str, Any] = {
        ROLLOUT_WEIGHT_PARAM: a.weight,
        ROLLOUT_STEP_PARAM: a.step,
        ROLLOUT_SINCE_PARAM: None if a.since is None else a.since.isoformat(),
    }
    params |= {f"{ROLLOUT_THRESHOLD_PARAM_PREFIX}{g.name}": g.threshold for g in a.gates}
    for key, value in params.items():
        if value is not None:
            client.log_param(run_id, key, value)
    tags = {
        "service": a.service,
        ROLLOUT_DECISION_TAG: a.decision.value,
        ROLLOUT_STABLE_TAG: a.stable,
        ROLLOUT_CANDIDATE_TAG: a.candidate,
        ROLLOUT_MODE_TAG: a.mode,
    }
    tags |= {
        f"{ROLLOUT_VERDICT_TAG_PREFIX}{g.name}": g.verdict.value for g in (a.evidence, *a.gates)
    }
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    tracking.finish_run(client, run_id, files)
    return run_id
