"""How many threads the HAProxy ingress should run: Ray Serve's default against one per core
(this project's default), at 16 connections, in one run.

Ray Serve reads `RAY_SERVE_HAPROXY_NBTHREAD` when Serve starts, so each side restarts the local
Ray head with it in the environment, deploys the manifest, warms up and measures; rounds
alternate the sides and end on one per core, which the rest of the benchmark runs with.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any

from benchmarks.ab import CONNECTIONS, Load, Setting, alternate, median, table
from benchmarks.load import LoadResult

RAY_DEFAULT = 4  # ray.serve._private.constants.RAY_SERVE_HAPROXY_NBTHREAD's default


def sides() -> dict[str, int]:
    """Key in results.json -> HAProxy threads; one per core last (the default: what stays)."""
    return {"ray-default": RAY_DEFAULT, "per-core": len(os.sched_getaffinity(0))}


@contextlib.contextmanager
def restarted_with(threads: int) -> Iterator[None]:
    """The local Ray head restarted with HAProxy on `threads` threads, the manifest deployed."""
    from mlops import stack
    from services.settings import get_settings
    from serving.deploy import deploy
    from serving.k8s import HAPROXY_THREADS_ENV
    from serving.manifest import manifest_path

    settings = get_settings()
    saved = os.environ.get(HAPROXY_THREADS_ENV)
    os.environ[HAPROXY_THREADS_ENV] = str(threads)
    try:
        stack.ray_down(settings)
        stack.ray_up(settings, timeout_s=180)
        deploy(manifest_path())
        yield
    finally:
        os.environ.pop(HAPROXY_THREADS_ENV, None)
        if saved is not None:
            os.environ[HAPROXY_THREADS_ENV] = saved


def measure_cost(load: Load) -> dict[str, list[LoadResult]]:
    """Per side, one measurement a round (alternating, each after a restart)."""
    settings = [
        Setting(key, f"HAProxy {threads} threads", functools.partial(restarted_with, threads))
        for key, threads in sides().items()
    ]
    return alternate(settings, load)


def report_lines(cost: dict[str, list[dict[str, Any]]] | None, cores: int) -> list[str]:
    """The A/B of HAProxy's threads (absent from results of older runs)."""
    if not cost:
        return []
    from serving.k8s import HAPROXY_THREADS_ENV

    rate = {key: median(runs, "requests_per_s") for key, runs in cost.items()}
    labels = {
        "per-core": f"{cores} (one per core)",
        "ray-default": f"{RAY_DEFAULT} (Ray's default)",
    }
    return [
        "",
        "## HAProxy's threads",
        "",
        *table("HAProxy threads", [(labels[key], cost[key]) for key in labels]),
        "",
        f"One HAProxy thread per core gives {rate['per-core'] / rate['ray-default']:.2f}x the "
        f"requests/s of Ray Serve's default of {RAY_DEFAULT} threads at {CONNECTIONS} "
        f"connections on {cores} cores (medians of the rounds, which alternate the two, each "
        f"after a restart of the Ray head with `{HAPROXY_THREADS_ENV}`): "
        + (
            "one per core is the default (`mlops stack up`, and each container's cores in the "
            "RayService)."
            if rate["per-core"] >= rate["ray-default"]
            else "this run does not support the default of one per core."
        ),
    ]
