"""The replicas-per-core A/B of the serving benchmark without a stack: its sides, its rounds,
the manifest edit it deploys and its report."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from benchmarks import ab, replicas_ab
from benchmarks.load import LoadResult
from serving.deployments import BATCH, REALTIME
from serving.manifest import hold_replicas, load, manifest_path

pytestmark = pytest.mark.unit


def test_sides_are_half_and_twice_a_replica_per_core_then_the_specs_count(monkeypatch):
    monkeypatch.setattr(replicas_ab.os, "cpu_count", lambda: 2)
    assert replicas_ab.counts() == [1, 4, 2]  # fraud-detection's max_replicas: 2
    monkeypatch.setattr(replicas_ab.os, "cpu_count", lambda: 4)
    assert replicas_ab.counts() == [8, 2]  # half a replica per core is the spec's count


def test_rounds_alternate_the_counts_and_the_manifest_is_deployed_again(monkeypatch):
    events: list[str] = []

    @contextlib.contextmanager
    def replicas_deployed(count: int) -> Iterator[None]:
        events.append(f"deploy {count}")
        yield

    def measure(name: str, url: str, body: str, connections: int, seconds: int) -> LoadResult:
        return LoadResult(name, connections, 1.0, 1.0, 1.0, 0)

    monkeypatch.setattr(replicas_ab.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(replicas_ab, "replicas_deployed", replicas_deployed)
    monkeypatch.setattr("serving.deploy.deploy", lambda path: events.append(f"manifest {path}"))
    cost = replicas_ab.measure_cost(ab.Load("u", "{}", 10, 30, rounds=2, measure=measure))
    assert events == ["deploy 1", "deploy 4", "deploy 2"] * 2 + [f"manifest {manifest_path()}"]
    assert list(cost) == ["1", "4", "2"]


@pytest.mark.parametrize("deployment", [REALTIME, BATCH])
def test_the_edit_holds_one_deployment_at_the_count(deployment):
    app = next(a for a in load(manifest_path())["applications"] if a["name"] == "fraud-detection")
    before = {d["name"]: dict(d["autoscaling_config"]) for d in app["deployments"]}
    hold_replicas(3, app, deployment)
    after = {d["name"]: d["autoscaling_config"] for d in app["deployments"]}
    for name, config in after.items():
        held = (config["min_replicas"], config.get("initial_replicas"), config["max_replicas"])
        assert (held == (3, 3, 3)) == (name == deployment)
        assert name == deployment or config == before[name]


def test_the_report_compares_every_count_with_the_specs(monkeypatch):
    monkeypatch.setattr(replicas_ab.os, "cpu_count", lambda: 2)

    def run(rate: float) -> dict:
        return {"requests_per_s": rate, "p50_ms": 5.0, "p99_ms": 9.0, "cpu_ms_per_request": 0.7}

    cost = {"1": [run(1_000)] * 3, "4": [run(1_800)] * 3, "2": [run(2_000)] * 3}
    text = "\n".join(replicas_ab.report_lines(cost))
    assert "| 2 replicas (1 per core) | 3 | 2000 |" in text
    assert "0.50x with 1 replica (0.5 per core), 0.90x with 4 replicas (2 per core)" in text
    assert "the spec's count is the fastest side" in text
    faster = {**cost, "4": [run(2_400)] * 3}
    assert "fastest side is 4 replicas (2 per core), not the spec's 2" in "\n".join(
        replicas_ab.report_lines(faster)
    )
    assert replicas_ab.report_lines(None) == []
