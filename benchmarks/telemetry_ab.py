"""What request telemetry costs: the same endpoint with the replicas' request records and
metrics on and off (`MLOPS_REQUEST_TELEMETRY=0`, a switch for this A/B only), in one run.

Each round redeploys the manifest with the switch in the replicas' environment (Serve restarts
them), warms up, and measures at 16 connections; rounds alternate off and on, so a drift of
the machine during the run touches both sides.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from benchmarks.load import LoadResult, run_wrk

log = logging.getLogger(__name__)
CONNECTIONS = 16
ROUNDS = 2
Measure = Callable[[str, str, str, int, int], LoadResult]  # name, url, body, connections, s


@dataclass(frozen=True)
class TelemetryCost:
    on: list[LoadResult]
    off: list[LoadResult]


def mean(results: list[dict[str, float]], field: str) -> float:
    """The mean of one figure over rounds (as stored in results.json)."""
    return sum(r[field] for r in results) / len(results)


@contextlib.contextmanager
def telemetry(enabled: bool) -> Iterator[None]:
    """The manifest deployed with request telemetry on (the default environment) or off."""
    from services.settings import REQUEST_TELEMETRY_ENV
    from serving.deploy import deploy
    from serving.manifest import manifest_path

    saved = os.environ.pop(REQUEST_TELEMETRY_ENV, None)
    if not enabled:
        os.environ[REQUEST_TELEMETRY_ENV] = "0"
    try:
        deploy(manifest_path())
        yield
    finally:
        os.environ.pop(REQUEST_TELEMETRY_ENV, None)
        if saved is not None:
            os.environ[REQUEST_TELEMETRY_ENV] = saved


def measure_cost(
    url: str,
    body: str,
    duration_s: int,
    warmup_s: int,
    rounds: int = ROUNDS,
    measure: Measure = run_wrk,
) -> TelemetryCost:
    """Requests/s and latency at 16 connections with telemetry off and on, alternating; the
    last round leaves it on, as deployed by default."""
    cost = TelemetryCost(on=[], off=[])
    for _ in range(rounds):
        for enabled, side in ((False, cost.off), (True, cost.on)):
            name = f"request telemetry {'on' if enabled else 'off'}"
            with telemetry(enabled):
                log.info("%s: warm-up, then %d s", name, duration_s)
                measure(name, url, body, CONNECTIONS, warmup_s)
                side.append(measure(name, url, body, CONNECTIONS, duration_s))
    return cost


def report_lines(cost: dict[str, list[dict[str, Any]]] | None) -> list[str]:
    """The A/B of request records and metrics (absent from results of older runs)."""
    if not cost:
        return []
    lines = [
        "",
        "## What request telemetry costs",
        "",
        "| request records + metrics | rounds | requests/s | p50 ms | p99 ms | CPU ms/request |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for side in ("on", "off"):
        runs = cost[side]
        lines.append(
            f"| {side} | {len(runs)} | {mean(runs, 'requests_per_s'):.0f} | "
            f"{mean(runs, 'p50_ms'):.2f} | {mean(runs, 'p99_ms'):.2f} | "
            f"{mean(runs, 'cpu_ms_per_request'):.2f} |"
        )
    on, off = (mean(cost[side], "requests_per_s") for side in ("on", "off"))
    return [
        *lines,
        "",
        f"At {CONNECTIONS} connections the records and metrics of every request cost "
        f"{1 - on / off:.1%} of the requests/s (rounds alternate off and on, each after a "
        "redeploy and a warm-up; `MLOPS_REQUEST_TELEMETRY=0` exists for this A/B only).",
    ]
