"""What the inference log's write-ahead step costs: the same endpoint with each log durability
(`MLOPS_LOG_DURABILITY`), in one run.

- memory: rows buffered in the replica only, as before write-ahead files (a killed replica
  loses what it answered since its last flush);
- os, the default: each request's rows handed to the operating system (one `write` to the
  replica's segment file) before the answer leaves: a killed process loses nothing;
- fsync: the same, then `fdatasync` before the answer: a power loss loses nothing.

Each round redeploys the manifest with the level in the replicas' environment (Serve restarts
them), warms up, and measures at 16 connections; rounds go through memory, fsync and os, so the
cluster is left at the default.
"""

from __future__ import annotations

import functools
from typing import Any

from benchmarks.ab import CONNECTIONS, Load, Setting, alternate, deployed_with, median, table
from benchmarks.load import LoadResult

LEVELS = ("memory", "fsync", "os")  # the default last: what stays deployed
BASELINE = "memory"
MAX_THROUGHPUT_COST = 0.05  # the write-ahead step may cost at most 5% of the requests/s
MAX_P99_RATIO = 1.1  # and raise p99 at most 1.1x


def measure_cost(load: Load) -> dict[str, list[LoadResult]]:
    """Per durability level, one measurement a round (alternating)."""
    from services.settings import LOG_DURABILITY_ENV

    settings = [
        Setting(
            level,
            f"log durability {level}",
            functools.partial(deployed_with, LOG_DURABILITY_ENV, level),
        )
        for level in LEVELS
    ]
    return alternate(settings, load)


def report_lines(cost: dict[str, list[dict[str, Any]]] | None) -> list[str]:
    """The A/B of the write-ahead step (absent from results of older runs)."""
    if not cost:
        return []
    rate = {level: median(cost[level], "requests_per_s") for level in LEVELS}
    p99 = {level: median(cost[level], "p99_ms") for level in LEVELS}
    lines = [
        "",
        "## What the inference log's write-ahead step costs",
        "",
        *table("log durability", [(level, cost[level]) for level in (BASELINE, "os", "fsync")]),
        "",
    ]
    for level in ("os", "fsync"):
        loss, ratio = 1 - rate[level] / rate[BASELINE], p99[level] / p99[BASELINE]
        met = loss <= MAX_THROUGHPUT_COST and ratio <= MAX_P99_RATIO
        lines.append(
            f"- `{level}` against `{BASELINE}` at {CONNECTIONS} connections: {loss:.1%} fewer "
            f"requests/s, p99 {ratio:.2f}x (target: at most {MAX_THROUGHPUT_COST:.0%} and "
            f"{MAX_P99_RATIO}x: {'met' if met else 'missed'})."
        )
    lines += [
        "",
        "Medians of rounds that alternate the levels, each after a redeploy and a warm-up. "
        "`os`, the default, writes each request's rows to the replica's segment file before "
        "the answer leaves (a killed replica loses nothing); `fsync` also waits for the disk "
        "(a power loss loses nothing); `memory` only buffers them (docs/RELIABILITY.md).",
    ]
    return lines
