"""A/B runs of one endpoint under several deployed settings, in one run, and their table.

Rounds alternate the settings, each after deploying it and a warm-up, at 16 connections, so a
drift of the machine during the run touches every side alike.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from benchmarks.load import LoadResult, run_wrk
from serving.deployments import REALTIME

log = logging.getLogger(__name__)
CONNECTIONS = 16
ROUNDS = 3  # odd: the median is one measured round, robust to one disturbed round
Measure = Callable[[str, str, str, int, int], LoadResult]  # name, url, body, connections, s


@dataclass(frozen=True)
class Setting:
    """One side of an A/B: its key in results.json, the name of its load runs, and the
    deployment of it (entered before its warm-up, left after its measurement)."""

    key: str
    name: str
    deployed: Callable[[], AbstractContextManager[object]]


@dataclass(frozen=True)
class Load:
    """What every side of an A/B is measured with: `body` POSTed to `url` over `connections`,
    a warm-up of `warmup_s` then `duration_s` measured, `rounds` times."""

    url: str
    body: str
    duration_s: int
    warmup_s: int
    rounds: int = ROUNDS
    measure: Measure = run_wrk
    connections: int = CONNECTIONS

    def run(self, name: str, seconds: int) -> LoadResult:
        return self.measure(name, self.url, self.body, self.connections, seconds)


def replicas(service: str, deployment: str = REALTIME) -> list[Any]:
    """`service`'s replicas of `deployment` (Ray Serve's `ReplicaDetails`), from its REST API."""
    from serving.deploy import applications

    return applications()[service].deployments[deployment].replicas


def running_replicas(service: str, deployment: str = REALTIME) -> list[Any]:
    """The RUNNING ones of `replicas`."""
    from ray.serve.schema import ReplicaState

    return [r for r in replicas(service, deployment) if r.state == ReplicaState.RUNNING]


@contextlib.contextmanager
def deployed_with(variable: str, value: str | None) -> Iterator[None]:
    """The manifest deployed with `variable` set to `value` (None: unset) in the replicas'
    environment; the deployer's environment is restored afterwards."""
    from serving.deploy import deploy
    from serving.manifest import manifest_path

    saved = os.environ.pop(variable, None)
    if value is not None:
        os.environ[variable] = value
    try:
        deploy(manifest_path())
        yield
    finally:
        os.environ.pop(variable, None)
        if saved is not None:
            os.environ[variable] = saved


def deploy_edited(service: str, edit: Callable[[Any], None]) -> None:
    """Deploy the manifest with `edit` applied to `service`'s application (a scratch copy: the
    manifest itself is untouched)."""
    import tempfile
    from pathlib import Path

    from mlops.sandbox import manifest_copy
    from serving.deploy import deploy

    with tempfile.TemporaryDirectory() as folder:
        deploy(manifest_copy(Path(folder) / "manifest.yaml", service, edit))


def alternate(settings: Sequence[Setting], load: Load) -> dict[str, list[LoadResult]]:
    """Per setting key, one measurement a round; every round goes through the settings in
    order, each deployed, warmed up, then measured."""
    runs: dict[str, list[LoadResult]] = {setting.key: [] for setting in settings}
    for _ in range(load.rounds):
        for setting in settings:
            with setting.deployed():
                log.info("%s: warm-up, then %d s", setting.name, load.duration_s)
                load.run(setting.name, load.warmup_s)
                runs[setting.key].append(load.run(setting.name, load.duration_s))
    return runs


def median(results: list[dict[str, float]], field: str) -> float:
    """The median of one figure over rounds (as stored in results.json): a round disturbed by
    the machine moves a mean, not the median."""
    return statistics.median(r[field] for r in results)


def median_rates(cost: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, float], str]:
    """Per side, the median requests/s of its rounds; and the side with the highest."""
    rates = {key: median(runs, "requests_per_s") for key, runs in cost.items()}
    return rates, max(rates, key=rates.__getitem__)


def table(label: str, sides: Sequence[tuple[str, list[dict[str, Any]]]]) -> list[str]:
    """A markdown table of the median figures of each side (label, stored runs), in order."""
    lines = [
        f"| {label} | rounds | requests/s | min-max | p50 ms | p99 ms | CPU ms/request |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for side, runs in sides:
        rates = [r["requests_per_s"] for r in runs]
        lines.append(
            f"| {side} | {len(runs)} | {median(runs, 'requests_per_s'):.0f} | "
            f"{min(rates):.0f}-{max(rates):.0f} | "
            f"{median(runs, 'p50_ms'):.2f} | {median(runs, 'p99_ms'):.2f} | "
            f"{median(runs, 'cpu_ms_per_request'):.2f} |"
        )
    return lines
