"""What request telemetry costs: the same endpoint with the replicas' request records and
metrics on and off (`MLOPS_REQUEST_TELEMETRY=0`, a switch for this A/B only), in one run.

Each round redeploys the manifest with the switch in the replicas' environment (Serve restarts
them), warms up, and measures at 16 connections; rounds alternate off and on, so a drift of
the machine during the run touches both sides.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from benchmarks.ab import (
    CONNECTIONS,
    ROUNDS,
    Load,
    Measure,
    Setting,
    alternate,
    deployed_with,
    median,
    table,
)
from benchmarks.load import LoadResult, run_wrk


@dataclass(frozen=True)
class TelemetryCost:
    on: list[LoadResult]
    off: list[LoadResult]


def telemetry(enabled: bool) -> AbstractContextManager[None]:
    """The manifest deployed with request telemetry on (the default environment) or off."""
    from services.settings import REQUEST_TELEMETRY_ENV

    return deployed_with(REQUEST_TELEMETRY_ENV, None if enabled else "0")


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
    settings = [
        Setting(side, f"request telemetry {side}", functools.partial(telemetry, side == "on"))
        for side in ("off", "on")
    ]
    runs = alternate(settings, Load(url, body, duration_s, warmup_s, rounds, measure))
    return TelemetryCost(on=runs["on"], off=runs["off"])


def report_lines(cost: dict[str, list[dict[str, Any]]] | None) -> list[str]:
    """The A/B of request records and metrics (absent from results of older runs)."""
    if not cost:
        return []
    on, off = (median(cost[side], "requests_per_s") for side in ("on", "off"))
    return [
        "",
        "## What request telemetry costs",
        "",
        *table("request records + metrics", [(side, cost[side]) for side in ("on", "off")]),
        "",
        f"At {CONNECTIONS} connections the records and metrics of every request cost "
        f"{1 - on / off:.1%} of the requests/s (medians of the rounds, which alternate off and "
        "on, each after a redeploy and a warm-up; `MLOPS_REQUEST_TELEMETRY=0` exists for this "
        "A/B only).",
    ]
