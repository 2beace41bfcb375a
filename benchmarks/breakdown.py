"""Where a real-time request's time goes: the replica's own steps timed in-process on the served
version, and the rest read off the same run's 1-connection latencies (through the ingress,
straight to a replica, and the bare server).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks import durability_ab
from benchmarks.realtime import figure

CALLS = 5_000  # per step: enough for a stable mean of a few-µs call


def _mean_us(step: Callable[[], object], calls: int) -> float:
    step()  # first call outside the timing (lazy set-up)
    started = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - started) / calls * 1e6


def stage_costs_us(service: str, version: str, body: str, calls: int = CALLS) -> dict[str, float]:
    """Microseconds per single-record request of each step a replica runs on it, in order."""
    import orjson

    from services.spec import load_spec
    from serving.api import new_request, row_ids
    from serving.model_slot import load_version

    served = load_version(service, version, load_spec(service).serving.max_request_rows)
    raw_body = body.encode()
    records = served.api.parse_records(raw_body)
    matrix = served.model.encoder.encode_records(records)
    raw = served.model.predict_matrix(matrix)
    key = new_request()
    row = durability_ab.logged_row(records[0])
    return {
        "validation (pydantic-core, the spec's rules)": _mean_us(
            lambda: served.api.parse_records(raw_body), calls
        ),
        "encoding": _mean_us(lambda: served.model.encoder.encode_records(records), calls),
        f"predict ({served.model.runtime})": _mean_us(
            lambda: served.model.predict_matrix(matrix), calls
        ),
        "answer (row ids, JSON)": _mean_us(
            lambda: orjson.dumps(served.api.predictions(raw, row_ids(key, 1))), calls
        ),
        "inference log append (`os`)": durability_ab.append_cost_us(row, calls, ("os",))["os"],
    }


def report_lines(stages: dict[str, float] | None, realtime: list[dict[str, Any]]) -> list[str]:
    """A table of the parts of the 1-connection p50 (absent from results of older runs)."""
    if not stages:
        return []
    p50 = {e["kind"]: figure(e, "p50_ms") * 1e3 for e in realtime if e["connections"] == 1}
    if not {"ours", "ours-direct", "bare"} <= p50.keys():
        return []
    in_replica = sum(stages.values())
    rows = [
        ("ingress (HAProxy hop)", p50["ours"] - p50["ours-direct"], "p50 through it - p50 direct"),
        *((name, us, "in-process, mean") for name, us in stages.items()),
        (
            "replica framework, HTTP and client (the rest)",
            p50["ours-direct"] - in_replica,
            "p50 direct - the steps above",
        ),
    ]
    lines = [
        "",
        "## Where a request's time goes (1 connection)",
        "",
        "| part | µs | how measured |",
        "| --- | --- | --- |",
        *(f"| {name} | {us:.0f} | {how} |" for name, us, how in rows),
        f"| **p50 through the ingress** | **{p50['ours']:.0f}** | wrk |",
        "",
        f"The bare server's p50 is {p50['bare']:.0f} µs for HTTP, the client, encoding and an "
        "`inplace_predict` call"
        + (f", {p50['limit']:.0f} µs with ONNX Runtime's call instead" if "limit" in p50 else "")
        + ": the replica framework's share above is what Ray Serve (its HTTP server, router, "
        "request merging, request telemetry) adds to that.",
    ]
    return lines
