"""How many real-time replicas the machine's cores want: the endpoint with its Realtime
deployment held at half a replica, one and two replicas per core, in one run.

Each side deploys a copy of the manifest whose Realtime deployment has exactly that many
replicas (min = max), waits until they all run and no other is left, warms up and measures at
16 connections; rounds alternate the sides, the spec's full-load count (its `max_replicas`,
what autoscaling reaches under this load) last. The manifest itself is deployed again at the
end. Every replica is one process doing the same work per request.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterator
from typing import Any

from benchmarks.ab import (
    CONNECTIONS,
    Load,
    Setting,
    alternate,
    deploy_edited,
    median_rates,
    replicas,
    running_replicas,
    table,
)
from benchmarks.load import LoadResult
from services.spec import load_spec
from serving.deployments import REALTIME

SERVICE = "fraud-detection"
WAIT_S = 180.0


def counts() -> list[int]:
    """Replicas per side: half, twice and (last) the spec's own full-load count."""
    cores = os.cpu_count() or 1
    spec = load_spec(SERVICE).serving.realtime.max_replicas
    others = sorted({max(1, cores // 2), 2 * cores} - {spec})
    return [*others, spec]


def describe(count: int) -> str:
    cores = os.cpu_count() or 1
    return f"{count} replica{'s' * (count > 1)} ({count / cores:g} per core)"


def replica_counts(deployment: str = REALTIME) -> tuple[int, int]:
    """SERVICE's replicas of `deployment`: RUNNING, and all of them (starting or stopping too)."""
    return len(running_replicas(SERVICE, deployment)), len(replicas(SERVICE, deployment))


@contextlib.contextmanager
def replicas_deployed(count: int, deployment: str = REALTIME) -> Iterator[None]:
    """The manifest deployed with exactly `count` replicas of `deployment`, all running."""
    from serving.manifest import hold_replicas

    deploy_edited(SERVICE, functools.partial(hold_replicas, count, deployment=deployment))
    deadline = time.monotonic() + WAIT_S
    while (running := replica_counts(deployment)) != (count, count):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} running {deployment} replicas not reached: {running}")
        time.sleep(1)
    yield


def measure_cost(load: Load) -> dict[str, list[LoadResult]]:
    """Per replica count (the key, a string), one measurement a round at 16 connections;
    the manifest is deployed again afterwards."""
    from serving.deploy import deploy
    from serving.manifest import manifest_path

    settings = [
        Setting(str(count), describe(count), functools.partial(replicas_deployed, count))
        for count in counts()
    ]
    try:
        return alternate(settings, load)
    finally:
        deploy(manifest_path())


def report_lines(cost: dict[str, list[dict[str, Any]]] | None) -> list[str]:
    """The A/B of replicas per core (absent from results of older runs)."""
    if not cost:
        return []
    spec = str(load_spec(SERVICE).serving.realtime.max_replicas)
    rate, best = median_rates(cost)
    verdict = (
        "the spec's count is the fastest side"
        if best == spec
        else f"this run's fastest side is {describe(int(best))}, not the spec's {spec}"
    )
    others = ", ".join(
        f"{rate[key] / rate[spec]:.2f}x with {describe(int(key))}" for key in cost if key != spec
    )
    return [
        "",
        "## Why one real-time replica per core at full load",
        "",
        *table(
            f"Realtime replicas, {CONNECTIONS} connections",
            [(describe(int(key)), cost[key]) for key in cost],
        ),
        "",
        f"Against {describe(int(spec))} (the spec's `max_replicas`, reached under this load): "
        f"{others} (medians of the rounds, which alternate the counts, each after a redeploy "
        f"and a warm-up): {verdict}.",
    ]
