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
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
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


def logged_row(record: dict[str, Any]) -> dict[str, Any]:
    """A request's `record` as the predictions log keeps it: its record's columns, its row id
    and the model's outputs."""
    from services import inference_log as log

    request = uuid.uuid4().hex
    return record | {
        log.REQUEST_ID: f"{request}-0",
        log.TIMESTAMP: datetime.now(UTC),
        log.SERVICE: "fraud-detection",
        log.MODEL_VERSION: "1",
        log.ENDPOINT: "predict",
        log.VARIANT: log.STABLE,
        log.REQUEST: request,
        log.STATUS: 200,
        log.ROWS: 1,
        log.LATENCY_MS: 1.7,
        log.PREDICTION: 0,
        log.PROBABILITY: 0.12,
    }


def append_cost_us(
    row: dict[str, Any], appends: int = 20_000, levels: tuple[str, ...] = LEVELS
) -> dict[str, float]:
    """Per durability level, the microseconds one request's append of `row` takes in-process
    (what the write-ahead step adds per request, without the machine's noise around it)."""
    from services.inference_log import PREDICTIONS_KIND
    from serving.log_writer import InferenceLogWriter

    costs = {}
    for level in levels:
        count = appends // 20 if level == "fsync" else appends  # each waits for the disk
        with tempfile.TemporaryDirectory(prefix="bench-wal-") as folder:
            writer = InferenceLogWriter(
                str(Path(folder) / "log"),
                "bench",
                PREDICTIONS_KIND,
                "bench",
                wal_dir=None if level == "memory" else Path(folder) / "wal",
                sync=level == "fsync",
                max_rows=10 * appends,  # no flush while measuring
                interval_s=3_600,
            )
            started = time.perf_counter()
            for _ in range(count):
                writer.append_rows([row])
            costs[level] = (time.perf_counter() - started) / count * 1e6
            writer.close()
    return costs


def report_lines(
    cost: dict[str, list[dict[str, Any]]] | None, appends: dict[str, float] | None = None
) -> list[str]:
    """The A/B of the write-ahead step and the in-process cost of an append (absent from
    results of older runs)."""
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
        change = f"{loss:.1%} fewer" if loss >= 0 else f"{-loss:.1%} more"
        lines.append(
            f"- `{level}` against `{BASELINE}` at {CONNECTIONS} connections: {change} "
            f"requests/s, p99 {ratio:.2f}x (target: at most {MAX_THROUGHPUT_COST:.0%} fewer and "
            f"{MAX_P99_RATIO}x: {'met' if met else 'missed'})."
        )
    if appends:
        per_request = median(cost[BASELINE], "cpu_ms_per_request") * 1e3
        lines += [
            "",
            "In-process, one request's append to the log costs "
            + ", ".join(f"{appends[level]:.1f} µs with `{level}`" for level in LEVELS)
            + f"; the write-ahead step of `os` adds {appends['os'] - appends[BASELINE]:.1f} µs, "
            f"{(appends['os'] - appends[BASELINE]) / per_request:.1%} of the "
            f"{per_request:.0f} µs of CPU a request takes end to end (the `{BASELINE}` rounds).",
        ]
    lines += [
        "",
        "Medians of rounds that alternate the levels, each after a redeploy and a warm-up; "
        "where the ranges of two levels overlap, the difference is the machine's noise. "
        "`os`, the default, writes each request's rows to the replica's segment file before "
        "the answer leaves (a killed replica loses nothing); `fsync` also waits for the disk "
        "(a power loss loses nothing); `memory` only buffers them (docs/RELIABILITY.md).",
    ]
    return lines
