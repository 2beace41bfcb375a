"""Rollouts: a release that reaches users in steps, every step a manifest commit on main.

start (a tag) -> the policy's steps (shadow, canary ...) -> completion (the candidate becomes
the stable version: `production` = candidate, `previous` = the old stable) or abort (all
traffic back on stable, aliases untouched, the candidate's version tagged with the reason).
Git first, as a promotion: a step is recorded (committed, pushed) before the cluster changes;
a deploy or verify that fails after the commit is undone by a commit restoring the step
before, and aliases and cluster follow it back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from services.registry import PREVIOUS, PRODUCTION, aliased_number, connect
from services.registry_keys import ROLLOUT_ABORTED_TAG
from services.spec import Rollout, load_spec
from serving import manifest
from serving.deploy import deploy
from serving.gitops import GitRecordError, GitTarget, record
from serving.manifest import ManifestError
from serving.promote import (
    PromotionError,
    Restore,
    check_gates,
    failure,
    manifest_lock,
    move_aliases,
    parse_tag,
    roll_back,
    verify_serving,
)
from serving.routing import RolloutTraffic

log = logging.getLogger(__name__)
MAX_REASON_CHARS = 500  # MLflow tag values are bounded; the commit keeps the whole analysis


class RolloutError(PromotionError):
    """A rollout step refused, or undone after a failure; the message says why."""


@dataclass(frozen=True)
class Traffic:
    """What a service's manifest entry says runs: the stable version and a rollout, if any."""

    stable: str
    rollout: RolloutTraffic | None

    def edit(self, service: str) -> Callable[[Path], None]:
        """The manifest edit that makes `service` run this."""

        def apply(path: Path) -> None:
            manifest.set_model_version(path, service, self.stable, self.rollout)

        return apply


@dataclass(frozen=True)
class Step:
    """One change of a rollout: from `before` to `after`, recorded as `message`."""

    service: str
    action: str  # start, advance, complete, abort
    candidate: str
    before: Traffic
    after: Traffic
    message: str
    commit: str | None = None  # set once recorded


def policy_or_none(service: str) -> Rollout | None:
    """The service's rollout policy (None: a release serves all traffic at once)."""
    return load_spec(service).promotion.rollout


def policy(service: str) -> Rollout:
    """The service's rollout policy; refused when it has none."""
    rollout = policy_or_none(service)
    if rollout is None:
        raise RolloutError(
            f"{service} has no rollout policy (promotion.rollout in "
            f"services/{service}/service.yaml): `mlops promote` releases it at once"
        )
    return rollout


def rolls_out(path: Path, service: str) -> bool:
    """Whether a release of `service` is a rollout: it has a policy and a stable version to
    roll out against (a first release serves all traffic at once)."""
    return policy_or_none(service) is not None and manifest.traffic_of(path, service)[0] is not None


def step_traffic(rollout: Rollout, candidate: str, index: int) -> RolloutTraffic:
    """Step `index` (from 1) of the policy for `candidate`, starting now."""
    step = rollout.steps[index - 1]
    return RolloutTraffic(
        candidate=candidate,
        mode=step.mode,
        weight=step.weight,
        step=index,
        since=datetime.now(UTC).replace(microsecond=0),
    )


def step_index(rollout: Rollout, traffic: RolloutTraffic) -> int:
    """Where a rollout stands in its policy: its `step`, or for a hand-written one without it,
    the policy's step of the same mode and weight (0: none, the next step is the first)."""
    if traffic.step is not None:
        return traffic.step
    for index, step in enumerate(rollout.steps, start=1):
        if (step.mode, step.weight) == (traffic.mode, traffic.weight):
            return index
    return 0


def describe(traffic: RolloutTraffic | None, rollout: Rollout | None = None) -> str:
    if traffic is None:
        return "no rollout"
    steps = f"/{len(rollout.steps)}" if rollout else ""
    step = f"step {traffic.step}{steps}: " if traffic.step else ""
    return f"{step}{traffic.mode} {traffic.weight:g}% to v{traffic.candidate}"


def current(path: Path, service: str) -> Traffic:
    """What the manifest at `path` runs for `service`."""
    stable, rollout = manifest.traffic_of(path, service)
    if stable is None:
        raise RolloutError(f"{service} serves no version yet: there is nothing to roll out against")
    return Traffic(stable, rollout)


def in_progress(path: Path, service: str) -> tuple[Traffic, RolloutTraffic]:
    state = current(path, service)
    if state.rollout is None:
        raise RolloutError(f"{service} has no rollout in progress (v{state.stable} is stable)")
    return state, state.rollout


def start(
    tag: str,
    manifest_path: Path | None = None,
    do_deploy: bool = True,
    remote: str | None = None,
    verify_timeout_s: float = 120.0,
) -> Step:
    """Start rolling out a tagged version: gates, then the policy's first step, git first."""
    service, version = parse_tag(tag)
    rollout = policy(service)
    path = manifest_path or manifest.manifest_path()
    client = connect()
    with manifest_lock():
        before = current(path, service)
        if before.rollout is not None:
            raise RolloutError(
                f"{tag} refused: {service} is rolling out ({describe(before.rollout, rollout)}); "
                f"finish it or `mlops rollout abort --service {service}` first"
            )
        if before.stable == version:
            raise RolloutError(f"{tag} refused: {service} already serves v{version}")
        failures = check_gates(client, load_spec(service), version)
        if failures:
            raise RolloutError(f"{tag} refused: " + "; ".join(failures))
        after = Traffic(before.stable, step_traffic(rollout, version, 1))
        message = (
            f"Start rolling out {service} v{version} (tag {tag}): "
            f"{describe(after.rollout, rollout)}\n\nv{before.stable} stays stable and answers "
            "the rest; the aliases are unchanged until the rollout completes."
        )
        step = Step(service, "start", version, before, after, message)
        return _change(client, GitTarget.of(path, remote), path, step, do_deploy, verify_timeout_s)


def next_traffic(rollout: Rollout, before: Traffic, traffic: RolloutTraffic) -> Traffic:
    """The step after `traffic`: the policy's next one, or completion after the last."""
    index = step_index(rollout, traffic)
    if index < len(rollout.steps):
        return Traffic(before.stable, step_traffic(rollout, traffic.candidate, index + 1))
    return Traffic(traffic.candidate, None)


def plan_advance(path: Path, service: str, analysis: str = "") -> Step:
    """The next step of `service`'s rollout in the manifest at `path` (after the last step:
    completion), not yet recorded; `analysis` (markdown) ends its message."""
    rollout = policy(service)
    before, traffic = in_progress(path, service)
    after = next_traffic(rollout, before, traffic)
    if after.rollout is None:
        action = "complete"
        subject = (
            f"Complete the rollout of {service} v{traffic.candidate}: it serves all traffic "
            f"(production; previous v{before.stable})"
        )
    else:
        action = "advance"
        subject = (
            f"Advance the rollout of {service} v{traffic.candidate}: "
            f"{describe(after.rollout, rollout)}"
        )
    message = f"{subject}\n\n{analysis}".rstrip()
    return Step(service, action, traffic.candidate, before, after, message)


def plan_abort(path: Path, service: str, reason: str, analysis: str = "") -> Step:
    """All of `service`'s traffic back on its stable version, not yet recorded."""
    before, traffic = in_progress(path, service)
    message = (
        f"Abort the rollout of {service} v{traffic.candidate}: all traffic back on "
        f"v{before.stable}\n\n{reason}\n\n{analysis}"
    ).rstrip()
    return Step(service, "abort", traffic.candidate, before, Traffic(before.stable, None), message)


def advance(
    service: str,
    analysis: str = "",
    manifest_path: Path | None = None,
    do_deploy: bool = True,
    remote: str | None = None,
    verify_timeout_s: float = 120.0,
) -> Step:
    """Take the next step of `service`'s rollout (after the last: completion), git first."""
    path = manifest_path or manifest.manifest_path()
    client = connect()
    with manifest_lock():
        step = plan_advance(path, service, analysis)
        return _change(client, GitTarget.of(path, remote), path, step, do_deploy, verify_timeout_s)


def abort(
    service: str,
    reason: str,
    manifest_path: Path | None = None,
    do_deploy: bool = True,
    remote: str | None = None,
    verify_timeout_s: float = 120.0,
    analysis: str = "",
) -> Step:
    """Put all of `service`'s traffic back on its stable version, git first; the candidate's
    registered version is tagged with `reason`, the aliases stay as they are."""
    path = manifest_path or manifest.manifest_path()
    client = connect()
    with manifest_lock():
        step = plan_abort(path, service, reason, analysis)
        result = _change(
            client, GitTarget.of(path, remote), path, step, do_deploy, verify_timeout_s
        )
    tag_aborted(client, service, step.candidate, reason)
    return result


def tag_aborted(client: MlflowClient, service: str, candidate: str, reason: str) -> None:
    """Record on the candidate's registered version why its rollout was aborted."""
    try:
        client.set_model_version_tag(
            service, candidate, ROLLOUT_ABORTED_TAG, reason[:MAX_REASON_CHARS]
        )
    except (MlflowException, httpx.HTTPError) as exc:  # git and the cluster already agree
        log.error("could not tag %s v%s as aborted: %s", service, candidate, exc)


def _change(
    client: MlflowClient,
    target: GitTarget,
    path: Path,
    step: Step,
    do_deploy: bool,
    verify_timeout_s: float,
) -> Step:
    """Record the step's `after` in git, move the aliases on completion, deploy and verify; a
    failure after the commit restores `before` the same way and raises."""
    service, before, after = step.service, step.before, step.after
    subject = step.message.splitlines()[0]
    try:
        commit = record(target, path, after.edit(service), step.message)
    except (GitRecordError, ManifestError) as exc:
        raise RolloutError(f"{subject}: not recorded: {exc}") from None
    completes = after.stable != before.stable
    aliases = (
        {a: aliased_number(client, service, a) for a in (PRODUCTION, PREVIOUS)} if completes else {}
    )
    try:
        if completes:
            move_aliases(client, service, after.stable, aliases[PRODUCTION])
        if do_deploy:
            deploy(path)
            verify_serving(service, after.stable, verify_timeout_s, after.rollout)
    except (Exception, KeyboardInterrupt) as exc:
        reason = failure(exc)
        restore = Restore(
            before.edit(service),
            f"Roll back {service} to {describe(before.rollout)} on v{before.stable}",
            aliases,
        )
        undone = roll_back(client, target, path, service, restore, do_deploy, reason)
        raise RolloutError(f"{subject}: failed and was rolled back ({undone}): {reason}") from exc
    log.info("%s: %s (commit %s)", service, subject, commit)
    return replace(step, commit=commit)
