"""`mlops promote <service>@v<N>`: gates, the manifest commit on main, aliases, deploy, verify.

Git first: nothing that runs changes before the manifest commit is recorded (and pushed, with
a remote). A failure after it is undone by a second commit, and aliases and cluster follow,
so git, the `production` alias and the served version agree at the end of every path.
"""

from __future__ import annotations

import fcntl
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from services.inference_log import MODEL_VERSION
from services.model import signature_from_spec
from services.registry import PREVIOUS, PRODUCTION, aliased_number, connect, model_uri
from services.registry_keys import PROMOTED_AT_TAG, metric_tag
from services.settings import get_settings
from services.spec import SERVICE_NAME_PATTERN, ServiceSpec, SpecError, load_spec
from serving import manifest
from serving.deploy import app_health, deploy
from serving.gitops import GitRecordError, GitTarget, record, record_version
from serving.manifest import ManifestError
from serving.routing import ROLLOUT_KEY, RolloutTraffic

log = logging.getLogger(__name__)
_SERVICE, _VERSION = SERVICE_NAME_PATTERN[1:-1], manifest.VERSION_PATTERN.pattern[1:-1]
TAG_PATTERN = re.compile(rf"^(?P<service>{_SERVICE})@v(?P<version>{_VERSION})$")
VERIFY_STREAK = 5  # consecutive health answers that must report the new version


class PromotionError(RuntimeError):
    """A promotion refused by a gate or undone after a failure; the message says why."""


@dataclass(frozen=True)
class Promotion:
    service: str
    version: str
    replaced: str | None
    manifest: Path
    deployed: bool
    commit: str | None  # the release commit (None: the manifest already named the version)


def parse_tag(tag: str) -> tuple[str, str]:
    """`<service>@v<N>` -> (service, N); anything else is refused with the expected form."""
    match = TAG_PATTERN.fullmatch(tag.strip())
    if not match:
        raise PromotionError(
            f"invalid tag '{tag}': expected <service>@v<N>, e.g. fraud-detection@v3"
        )
    try:
        load_spec(match["service"])
    except SpecError as exc:
        raise PromotionError(str(exc)) from None
    return match["service"], match["version"]


def _metric(client: MlflowClient, spec: ServiceSpec, version: str) -> float:
    tags = client.get_model_version(spec.name, version).tags
    key = metric_tag(spec.evaluation.metric)
    if key not in tags:
        raise PromotionError(f"{spec.name} v{version} has no '{key}' tag: not a pipeline model")
    return float(tags[key])


def check_gates(client: MlflowClient, spec: ServiceSpec, version: str) -> list[str]:
    """Why `version` may not go to production (empty: it may)."""
    try:
        client.get_model_version(spec.name, version)
    except MlflowException:
        return [f"{spec.name} has no registered version {version}"]
    failures = []
    metric, value = spec.evaluation.metric, _metric(client, spec, version)
    if not spec.evaluation.meets(value, spec.evaluation.floor):
        failures.append(f"{metric} {value:.4f} does not meet the floor {spec.evaluation.floor}")
    production = aliased_number(client, spec.name, PRODUCTION)
    if production and production != version:
        current = _metric(client, spec, production)
        tolerance = spec.promotion.tolerance
        bar = current - tolerance if spec.evaluation.higher_is_better else current + tolerance
        if not spec.evaluation.meets(value, bar):
            failures.append(
                f"{metric} {value:.4f} is worse than production v{production} "
                f"({current:.4f}) beyond the tolerance {tolerance}"
            )
    if spec.promotion.require_signature:
        info = mlflow.models.get_model_info(model_uri(spec.name, version))
        expected = signature_from_spec(spec)
        if info.signature is None or info.signature.inputs != expected.inputs:
            failures.append("model signature does not match the spec's features")
    return failures


@contextmanager
def manifest_lock() -> Iterator[None]:
    """Serialise promotions on this machine (the workflow's concurrency group does it on CI)."""
    path = get_settings().home / "locks" / "manifest.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _serves(health: dict[str, Any], version: str, traffic: RolloutTraffic | None) -> bool:
    """Whether a health answer reports `version` ready, with `traffic`'s candidate routed."""
    if health.get(MODEL_VERSION) != version or not health.get("ready"):
        return False
    rollout = health.get(ROLLOUT_KEY) or {}
    if traffic is None:
        return not rollout
    routed = rollout.get("traffic") or {}
    expected = traffic.config()
    return rollout.get(MODEL_VERSION) == traffic.candidate and all(
        routed.get(key) == expected[key] for key in ("candidate", "mode", "weight")
    )


def _load_error(health: dict[str, Any], version: str, traffic: RolloutTraffic | None) -> str:
    """A replica's report that it could not load `version` or the candidate ('' if none)."""
    rollout = health.get(ROLLOUT_KEY) or {}
    if health.get("desired_version") == version and health.get("error"):
        return str(health["error"])
    if traffic and rollout.get("desired_version") == traffic.candidate and rollout.get("error"):
        return str(rollout["error"])
    return ""


def verify_serving(
    service: str, version: str, timeout_s: float, traffic: RolloutTraffic | None = None
) -> None:
    """Wait until the endpoint reports `version` (ready, and `traffic`'s candidate routed when
    given) several times in a row; a replica that could not load a version fails at once."""
    deadline, streak, last = time.monotonic() + timeout_s, 0, {}
    while time.monotonic() < deadline:
        last = app_health(service)
        error = _load_error(last, version, traffic)
        if error:
            raise PromotionError(f"/{service}/health: {error}")
        streak = streak + 1 if _serves(last, version, traffic) else 0
        if streak >= VERIFY_STREAK:
            return
        time.sleep(0.2)
    wanted = f"v{version}" + (f" with candidate v{traffic.candidate}" if traffic else "")
    raise PromotionError(
        f"/{service}/health did not report {wanted} within {timeout_s:.0f}s: {last}"
    )


def release_message(service: str, version: str, tag: str) -> str:
    return (
        f"Release {service} v{version} to production (tag {tag})\n\n"
        f"MLflow model {service}: alias {PRODUCTION} -> version {version}; "
        "the serve manifest and its RayService name it."
    )


def promote(
    tag: str,
    manifest_path: Path | None = None,
    do_deploy: bool = True,
    verify_timeout_s: float = 120.0,
    remote: str | None = None,
) -> Promotion:
    """Promote a registered version to production, git first, or change nothing and raise.

    gates -> manifest commit (pushed to `remote`'s main when given: refused means nothing
    changed) -> aliases -> deploy -> verify. A failure after the commit is undone by a commit
    that restores the replaced version, then the aliases and the cluster follow it back.
    """
    service, version = parse_tag(tag)
    spec = load_spec(service)
    path = manifest_path or manifest.manifest_path()
    target = GitTarget.of(path, remote)
    client = connect()
    with manifest_lock():
        rollout = manifest.rollouts(path).get(service)
        if rollout is not None:
            raise PromotionError(
                f"{tag} refused: {service} v{rollout.candidate} is rolling out; let it finish "
                f"or `mlops rollout abort --service {service}` first"
            )
        failures = check_gates(client, spec, version)
        if failures:
            raise PromotionError(f"{tag} refused: " + "; ".join(failures))
        aliases = {a: aliased_number(client, service, a) for a in (PRODUCTION, PREVIOUS)}
        replaced = manifest.versions(path).get(service)
        try:
            release = record_version(
                target, path, service, version, release_message(service, version, tag)
            )
        except (GitRecordError, ManifestError) as exc:
            raise PromotionError(f"{tag} not released: {exc}") from None
        try:
            move_aliases(client, service, version, aliases[PRODUCTION])
            if do_deploy:
                deploy(path)
                verify_serving(service, version, verify_timeout_s)
        except (Exception, KeyboardInterrupt) as exc:
            reason = failure(exc)
            restore = Restore(
                lambda p: manifest.set_model_version(p, service, replaced),
                f"Roll back {service} to {f'v{replaced}' if replaced else 'no version'}",
                aliases,
            )
            undone = roll_back(client, target, path, service, restore, do_deploy, reason)
            raise PromotionError(f"{tag} failed and was rolled back ({undone}): {reason}") from exc
    log.info("%s v%s in production (replaced %s; commit %s)", service, version, replaced, release)
    return Promotion(service, version, replaced, path, do_deploy, release)


def failure(exc: BaseException) -> object:
    """What a failed change reports: a gate's own message, else the exception's type and text."""
    return exc if isinstance(exc, PromotionError) else f"{type(exc).__name__}: {exc}"


def move_aliases(client: MlflowClient, service: str, version: str, production: str | None) -> None:
    """`production` -> `version` (stamped with when), `previous` -> the replaced production."""
    if production and production != version:
        client.set_registered_model_alias(service, PREVIOUS, production)
    client.set_registered_model_alias(service, PRODUCTION, version)
    client.set_model_version_tag(
        service, version, PROMOTED_AT_TAG, datetime.now(UTC).isoformat(timespec="seconds")
    )


@dataclass(frozen=True)
class Restore:
    """How to undo a change recorded in git: the manifest edit back, its commit's subject, and
    the aliases as they were (empty: the change moved none)."""

    edit: Callable[[Path], object]
    subject: str
    aliases: dict[str, str | None]


def roll_back(
    client: MlflowClient,
    target: GitTarget,
    path: Path,
    service: str,
    restore: Restore,
    redeploy: bool,
    reason: object,
) -> str:
    """Record the state before a failed change in git again, then restore aliases and cluster;
    says how."""
    try:
        commit = record(
            target,
            path,
            restore.edit,
            f"{restore.subject}\n\nThe change failed after its commit: {reason}",
        )
        how = f"commit {commit[:10]} on {target.where()}" if commit else "manifest unchanged"
    except GitRecordError as exc:  # still restore what runs; the message says what git holds
        log.error("the rollback commit was not recorded: %s", exc)
        how = f"ROLLBACK COMMIT NOT RECORDED, git still names the failed version: {exc}"
    for alias, version in restore.aliases.items():
        try:
            if version:
                client.set_registered_model_alias(service, alias, version)
            else:
                client.delete_registered_model_alias(service, alias)
        except (MlflowException, httpx.HTTPError) as exc:  # keep restoring the rest
            log.error("could not restore alias %s of %s: %s", alias, service, exc)
    if redeploy:
        try:
            deploy(path)
        except Exception as exc:  # the manifest is restored; the next deploy reconciles
            log.error("redeploying the restored manifest failed: %s", exc)
    return how


def align_aliases(path: Path) -> dict[str, str]:
    """Make alias `production` name the manifest's version (git is the truth); returns changes.

    A merged revert pull request changes only the manifest; deploying it moves the alias.
    """
    client = connect()
    changed = {}
    for service, version in manifest.versions(path).items():
        current = aliased_number(client, service, PRODUCTION)
        if version is None or current == version:
            continue
        move_aliases(client, service, version, current)
        changed[service] = version
    return changed
