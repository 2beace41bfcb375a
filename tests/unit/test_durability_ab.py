"""The write-ahead A/B of the serving benchmark without a stack: its rounds and its report."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from benchmarks import ab, durability_ab
from benchmarks.load import LoadResult

pytestmark = pytest.mark.unit


def test_rounds_deploy_each_level_and_leave_the_default_deployed(monkeypatch):
    events: list[str] = []

    @contextlib.contextmanager
    def deployed_with(variable: str, value: str | None) -> Iterator[None]:
        events.append(f"deploy {variable}={value}")
        yield

    def measure(name: str, url: str, body: str, connections: int, seconds: int) -> LoadResult:
        events.append(f"{name} {seconds} s")
        return LoadResult(name, connections, 1.0, 1.0, 1.0, 0)

    monkeypatch.setattr(durability_ab, "deployed_with", deployed_with)
    cost = durability_ab.measure_cost(ab.Load("u", "{}", 10, 30, rounds=2, measure=measure))
    deploys = [e for e in events if e.startswith("deploy")]
    assert (
        deploys
        == [f"deploy MLOPS_LOG_DURABILITY={level}" for level in ("memory", "fsync", "os")] * 2
    )
    assert events[:3] == [
        "deploy MLOPS_LOG_DURABILITY=memory",
        "log durability memory 30 s",
        "log durability memory 10 s",
    ]
    assert {level: len(runs) for level, runs in cost.items()} == {"memory": 2, "fsync": 2, "os": 2}


def test_the_report_gives_each_levels_cost_against_memory_and_the_targets():
    def run(rate: float, p99: float) -> dict:
        return {"requests_per_s": rate, "p50_ms": 5.0, "p99_ms": p99, "cpu_ms_per_request": 0.7}

    cost = {
        "memory": [run(r, 20.0) for r in (1_000, 1_010, 990)],
        "os": [run(r, 21.0) for r in (980, 700, 985)],  # one disturbed round
        "fsync": [run(r, 30.0) for r in (800, 810, 790)],
    }
    text = "\n".join(durability_ab.report_lines(cost))
    assert "| os | 3 | 980 |" in text
    assert "`os` against `memory` at 16 connections: 2.0% fewer requests/s, p99 1.05x" in text
    assert "1.1x: met" in text.split("`os`")[1].split("\n")[0]
    assert "`fsync` against `memory` at 16 connections: 20.0% fewer requests/s, p99 1.50x" in text
    assert "missed" in text.split("`fsync` against")[1].split("\n")[0]
