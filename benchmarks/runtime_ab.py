"""What the ONNX conversion buys: the same endpoint with the replicas scoring small calls with
XGBoost's `inplace_predict` and with ONNX Runtime on the version's checked conversion
(`MLOPS_SERVING_RUNTIME`), in one run.

Each round redeploys the manifest with the runtime in the replicas' environment (Serve restarts
them), checks that `/health` reports it, warms up and measures; rounds alternate xgboost and
onnx, at 16 connections and then at 1 connection, and leave the default (onnx) deployed. Per
request both sides do the same work but the model call: validation, encoding, the log row,
telemetry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

import httpx

from benchmarks.ab import CONNECTIONS, Load, Setting, alternate, deployed_with, median, table
from benchmarks.load import LoadResult

RUNTIMES = ("xgboost", "onnx")  # the default last: what stays deployed
SINGLE = "single"  # the key prefix of the 1-connection runs in results.json


@contextlib.contextmanager
def serving_with(runtime: str, health_url: str) -> Iterator[None]:
    """The manifest deployed with the replicas' runtime set to `runtime`, checked on `/health`
    (a side that silently served with the other runtime would make the A/B meaningless)."""
    from services.settings import SERVING_RUNTIME_ENV

    with deployed_with(SERVING_RUNTIME_ENV, runtime):
        reported = httpx.get(health_url, timeout=30).json().get("runtime")
        if reported != runtime:
            raise RuntimeError(f"deployed with runtime {runtime}, /health reports {reported}")
        yield


def measure_cost(load: Load, health_url: str) -> dict[str, list[LoadResult]]:
    """Per runtime, one measurement a round at 16 connections (key: the runtime) and one at 1
    connection (key: `single-<runtime>`)."""
    settings = [
        Setting(runtime, f"runtime {runtime}", functools.partial(serving_with, runtime, health_url))
        for runtime in RUNTIMES
    ]
    busy = alternate(settings, load)
    single = alternate(settings, dataclasses.replace(load, connections=1))
    return busy | {f"{SINGLE}-{runtime}": runs for runtime, runs in single.items()}


def report_lines(cost: dict[str, list[dict[str, Any]]] | None) -> list[str]:
    """The A/B of the replicas' runtime (absent from results of older runs)."""
    if not cost:
        return []
    from services.onnx_scoring import SMALL_CALL_ROWS, TOLERANCE
    from services.registry_keys import ONNX_CHECK_TAG
    from services.settings import DEFAULT_SERVING_RUNTIME

    rate = {r: median(cost[r], "requests_per_s") for r in RUNTIMES}
    p50 = {r: median(cost[f"{SINGLE}-{r}"], "p50_ms") for r in RUNTIMES}
    faster = max(RUNTIMES, key=rate.__getitem__)
    verdict = (
        "the default's choice holds"
        if faster == DEFAULT_SERVING_RUNTIME
        else f"this run does not support the default ({DEFAULT_SERVING_RUNTIME})"
    )
    return [
        "",
        "## Why replicas score small calls with ONNX Runtime",
        "",
        *table(f"runtime, {CONNECTIONS} connections", [(r, cost[r]) for r in RUNTIMES]),
        "",
        *table("runtime, 1 connection", [(r, cost[f"{SINGLE}-{r}"]) for r in RUNTIMES]),
        "",
        "ONNX Runtime on the version's checked conversion gives "
        f"{rate['onnx'] / rate['xgboost']:.2f}x the requests/s of XGBoost's `inplace_predict` "
        f"at {CONNECTIONS} connections and {p50['onnx'] / p50['xgboost']:.2f}x its p50 at 1 "
        "connection (medians of the rounds, which alternate the runtimes, each after a redeploy "
        f"and a warm-up): {verdict} (`MLOPS_SERVING_RUNTIME={DEFAULT_SERVING_RUNTIME}`). ONNX "
        f"Runtime scores calls of up to {SMALL_CALL_ROWS} rows; larger ones (the batch "
        "endpoint's, `mlops batch-score`'s) stay on XGBoost, faster per row in large batches "
        "(MODEL_LIMIT.md). A version whose conversion is not within "
        f"{TOLERANCE:.0e} of XGBoost on every row of its test split carries none and is scored "
        f"by XGBoost (demand-forecast's regression values: the version's `{ONNX_CHECK_TAG}` tag "
        "says by how much).",
    ]
