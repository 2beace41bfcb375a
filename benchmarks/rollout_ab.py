"""What a rollout costs: the same endpoint with fraud-detection's traffic on no rollout, a
shadow of 100% and a canary of 10%, in one run on the same model and stack.

Stable is the version the manifest names, the candidate another registered version. Each round
writes the traffic into the manifest's real-time `user_config`, deploys it (the replicas
reconfigure in place), waits until `/fraud-detection/health` reports the candidate loaded and
routed, warms up and measures at 16 connections; rounds alternate the three settings, and the
manifest is left without a rollout at the end, whatever happened.

Per request: in shadow the stable version answers, then the candidate scores the same body on
the same replica after the response (a second model call, plus its log rows); in a
canary of 10% one request in ten is answered by the candidate instead (one model call and one
row, as without a rollout).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from benchmarks.ab import CONNECTIONS, Load, Setting, alternate, median, table
from benchmarks.load import LoadResult
from services.inference_log import CANARY, SHADOW
from serving.routing import RolloutTraffic

log = logging.getLogger(__name__)
SERVICE = "fraud-detection"
NONE = "none"  # the key of the side without a rollout
KEYS = (NONE, SHADOW, CANARY)  # the order of every round
WEIGHTS = {SHADOW: 100.0, CANARY: 10.0}  # percent of requests
VERIFY_TIMEOUT_S = 120.0  # deploy to the candidate loaded and routed on the replicas
Apply = Callable[[str, RolloutTraffic | None], None]  # stable version, traffic (None: none)


@dataclass(frozen=True)
class RolloutCost:
    none: list[LoadResult]
    shadow: list[LoadResult]
    canary: list[LoadResult]


def traffic(key: str, candidate: str) -> RolloutTraffic | None:
    """The manifest's traffic of one side (None: no rollout), as the policy's first step."""
    if key == NONE:
        return None
    return RolloutTraffic(candidate=candidate, mode=key, weight=WEIGHTS[key], step=1)


def label(key: str) -> str:
    """What the table and the load runs call a side."""
    return "no rollout" if key == NONE else f"{key} {WEIGHTS[key]:g}%"


def other_version(stable: str, registered: Iterable[str]) -> str | None:
    """The newest registered version that is not `stable` (None: there is none)."""
    others = [int(v) for v in registered if str(v) != stable]
    return str(max(others)) if others else None


def versions() -> tuple[str, str]:
    """(stable, candidate): the version the manifest names and the newest other registered
    one; with no other, one more is registered from the pipeline's outputs."""
    from services.registry import connect
    from serving.manifest import manifest_path
    from serving.manifest import versions as served

    stable = served(manifest_path()).get(SERVICE)
    if stable is None:
        raise RuntimeError(f"the manifest serves no version of {SERVICE}: promote one first")
    registered = [v.version for v in connect().search_model_versions(f"name = '{SERVICE}'")]
    candidate = other_version(stable, registered)
    if candidate is None:
        from services.spec import load_spec
        from training.register import register

        candidate = register(load_spec(SERVICE))["version"]
    log.info("rollout A/B: stable v%s, candidate v%s", stable, candidate)
    return stable, candidate


def apply_traffic(stable: str, rollout: RolloutTraffic | None) -> None:
    """The manifest with `rollout` (or none) deployed, once `/health` reports `stable` ready and
    the candidate loaded and routed (or no rollout) several times in a row."""
    from serving.deploy import deploy
    from serving.manifest import manifest_path, set_model_version
    from serving.promote import verify_serving

    path = manifest_path()
    set_model_version(path, SERVICE, stable, rollout)
    deploy(path)
    verify_serving(SERVICE, stable, VERIFY_TIMEOUT_S, rollout)


@contextlib.contextmanager
def _deployed(apply: Apply, stable: str, rollout: RolloutTraffic | None) -> Iterator[None]:
    apply(stable, rollout)
    yield


def measure_cost(
    stable: str,
    candidate: str,
    load: Load,
    apply: Apply = apply_traffic,
) -> RolloutCost:
    """Requests/s and latency at 16 connections with no rollout, shadow 100% and canary 10%,
    alternating; the manifest is restored to no rollout at the end."""
    settings = [
        Setting(
            key, label(key), functools.partial(_deployed, apply, stable, traffic(key, candidate))
        )
        for key in KEYS
    ]
    try:
        runs = alternate(settings, load)
    finally:
        apply(stable, None)
    return RolloutCost(**runs)


def report_lines(cost: dict[str, list[dict[str, Any]]] | None) -> list[str]:
    """The A/B of rollout traffic (absent from results of older runs)."""
    if not cost:
        return []

    def ratios(key: str) -> str:
        rate, p99 = (
            median(cost[key], f) / median(cost[NONE], f) for f in ("requests_per_s", "p99_ms")
        )
        return f"{rate:.2f}x the requests/s and {p99:.2f}x the p99 of no rollout"

    return [
        "",
        "## What a rollout costs",
        "",
        *table("traffic", [(label(key), cost[key]) for key in KEYS]),
        "",
        f"Rounds alternate the three settings of {SERVICE} at {CONNECTIONS} connections, each "
        "after deploying the manifest with that traffic (the replicas reconfigure in place), "
        "waiting until `/health` reports the candidate loaded and routed, and a warm-up; "
        "each figure is the median of the rounds.",
        "",
        f"- {label(SHADOW)}: {ratios(SHADOW)}. The stable version answers every request, then "
        "the candidate scores the same body on the same replica after the response (a second "
        "model call, plus its prediction row and request record, per request).",
        f"- {label(CANARY)}: {ratios(CANARY)}. One request in ten is answered by the candidate "
        "instead of the stable version (one model call and one row per request either way).",
    ]
