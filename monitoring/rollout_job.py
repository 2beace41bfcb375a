"""`mlops rollout analyse`: judge a rollout's current step, keep the analysis (JSON, markdown,
an MLflow run), and with `apply` take its decision: the next step or the abort committed on
main (git first, then deploy), or, for a policy with `auto_advance: false`, a pull request
whose body is the analysis and whose merge applies the step (deploy.yml)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from monitoring.pull_requests import Change, opener_from_env
from monitoring.rollout_analysis import analyse, log_to_mlflow, markdown, report_dir, save
from monitoring.rollout_result import RolloutAnalysis, RolloutDecision
from services.registry import connect
from services.settings import get_settings, repo_root
from serving import rollout
from serving.gitops import committed_text, manifest_copy
from serving.k8s import k8s_path, render

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """An analysed step and what was done about it."""

    analysis: RolloutAnalysis
    files: list[Path]
    markdown: str
    applied: str  # one line: held, not applied, the commit, or the pull request

    @property
    def decision(self) -> RolloutDecision:
        return self.analysis.decision


def analyse_and_apply(
    service: str,
    path: Path,
    apply: bool = False,
    do_deploy: bool = True,
    remote: str | None = None,
) -> Outcome:
    """Analyse `service`'s rollout in the manifest at `path`; with `apply`, act on it."""
    state, traffic = rollout.in_progress(path, service)
    settings = get_settings()
    analysis = analyse(service, traffic, state.stable, settings.inference_log_uri, manifest=path)
    text = markdown(analysis)
    files = save(analysis, report_dir(settings.home, analysis))
    log_to_mlflow(connect(), analysis, files)
    if analysis.decision == RolloutDecision.HOLD:
        return Outcome(analysis, files, text, "held: the step goes on")
    if not apply:
        return Outcome(analysis, files, text, "not applied (without --apply)")
    reason = "; ".join(analysis.reasons)
    if not rollout.policy(service).auto_advance:
        step = _plan(path, service, analysis.decision, reason, text)
        url = propose(path, step)
        return Outcome(analysis, files, text, f"pull request {url}")
    if analysis.decision == RolloutDecision.ADVANCE:
        step = rollout.advance(service, text, path, do_deploy, remote)
    else:
        step = rollout.abort(service, reason, path, do_deploy, remote, analysis=text)
    return Outcome(analysis, files, text, f"{step.action}: commit {step.commit}")


def _plan(
    path: Path, service: str, decision: RolloutDecision, reason: str, text: str
) -> rollout.Step:
    if decision == RolloutDecision.ADVANCE:
        return rollout.plan_advance(path, service, text)
    return rollout.plan_abort(path, service, reason, text)


def step_branch(step: rollout.Step) -> str:
    after = step.after.rollout
    position = f"step-{after.step}" if after is not None and after.step else step.action
    return f"rollout/{step.service}/v{step.candidate}-{position}"


def propose(path: Path, step: rollout.Step) -> str:
    """Open (or update) the pull request of `step`: the committed manifest with the step
    applied and its RayService; merging it applies the step. Returns its URL."""
    repo = repo_root()
    relative, rayservice = (str(p.resolve().relative_to(repo)) for p in (path, k8s_path()))
    after = step.after
    if after.rollout is not None:  # the step starts when it is merged: its commit's time
        after = replace(after, rollout=after.rollout.model_copy(update={"since": None}))
    with manifest_copy(committed_text(path, "HEAD"), path.name) as copy:
        after.edit(step.service)(copy)
        files = {relative: copy.read_text(), rayservice: render(copy, source=Path(relative))}
    subject, _, body = step.message.partition("\n\n")
    change = Change(
        branch=step_branch(step),
        title=subject,
        body=f"{body}\n\nMerging this pull request applies the step (deploy.yml).",
        files=files,
        commit_message=subject,
    )
    result = opener_from_env().open_or_update(change)
    log.info("%s: %s -> %s", step.service, subject, result.url)
    return result.url
