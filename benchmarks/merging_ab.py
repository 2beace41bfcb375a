"""What request merging buys: the real-time endpoint with its replicas merging concurrent calls
into one model call as the spec says (`serving.request_merging`), not merging at all, and
waiting a little for company, in one run.

Each side deploys a copy of the manifest whose application carries the setting (Serve restarts
its replicas), checks that `/health` reports it, warms up and measures at 16 connections; rounds
alternate the sides and the spec's own setting is deployed last, so it stays. Per request every
side does the same work; what differs is how many requests share a model call and how long a
request may wait for others. At one connection there is never company: a wait adds to every
request's latency, which is why it is not measured there.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import httpx

from benchmarks.ab import (
    CONNECTIONS,
    Load,
    Setting,
    alternate,
    deploy_edited,
    median_rates,
    table,
)
from benchmarks.load import LoadResult
from services.spec import RequestMerging, load_spec
from serving.deployments import REQUEST_MERGING_KEY

SERVICE = "fraud-detection"
OTHERS = {"none": RequestMerging(max_requests=1), "wait": RequestMerging(wait_ms=2.0)}
SPEC = "as-specified"  # the key of the side deployed as the spec says


def sides() -> dict[str, RequestMerging]:
    """Every side by key, the spec's own last (what stays deployed)."""
    return OTHERS | {SPEC: load_spec(SERVICE).serving.request_merging}


def describe(merging: RequestMerging) -> str:
    if merging.max_requests == 1:
        return "no merging (1 request per call)"
    wait = "no wait" if merging.wait_ms == 0 else f"{merging.wait_ms:g} ms wait"
    return f"up to {merging.max_requests} requests per call, {wait}"


@contextlib.contextmanager
def merging_deployed(merging: RequestMerging, health_url: str) -> Iterator[None]:
    """The manifest deployed with SERVICE's replicas merging as `merging` says, checked on
    `/health` (a side that silently kept the old setting would make the A/B meaningless)."""

    def edit(app: Any) -> None:
        app["args"][REQUEST_MERGING_KEY] = merging.model_dump()

    deploy_edited(SERVICE, edit)
    reported = httpx.get(health_url, timeout=30).json().get(REQUEST_MERGING_KEY)
    if reported != merging.model_dump():
        raise RuntimeError(f"deployed {merging.model_dump()}, /health reports {reported}")
    yield


def measure_cost(load: Load, health_url: str) -> dict[str, list[LoadResult]]:
    """Per side key, one measurement a round at 16 connections."""
    settings = [
        Setting(key, describe(merging), functools.partial(merging_deployed, merging, health_url))
        for key, merging in sides().items()
    ]
    return alternate(settings, load)


def report_lines(cost: dict[str, list[dict[str, Any]]] | None) -> list[str]:
    """The A/B of request merging (absent from results of older runs)."""
    if not cost:
        return []
    merging = sides()
    rate, best = median_rates(cost)
    verdict = (
        "the spec's setting is the fastest side"
        if best == SPEC
        else f"this run's fastest side is {describe(merging[best])}, not the spec's"
    )
    return [
        "",
        "## Why replicas merge concurrent requests without waiting",
        "",
        *table(
            f"request merging, {CONNECTIONS} connections",
            [(describe(merging[key]), cost[key]) for key in merging],
        ),
        "",
        f"Merging requests already queued gives {rate[SPEC] / rate['none']:.2f}x the requests/s "
        f"of one model call per request, and waiting {merging['wait'].wait_ms:g} ms for company "
        f"{rate['wait'] / rate[SPEC]:.2f}x the spec's (medians of the rounds, which alternate "
        f"the sides, each after a redeploy and a warm-up): {verdict}. A wait also adds itself "
        "to the latency of every request that finds no company, all of them at one connection.",
    ]
