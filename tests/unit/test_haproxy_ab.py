"""The HAProxy-threads A/B of the serving benchmark without a stack: its rounds and report."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from benchmarks import ab, haproxy_ab
from benchmarks.load import LoadResult

pytestmark = pytest.mark.unit


def test_rounds_restart_with_each_thread_count_and_end_on_one_per_core(monkeypatch):
    events: list[str] = []

    @contextlib.contextmanager
    def restarted_with(threads: int) -> Iterator[None]:
        events.append(f"restart {threads}")
        yield

    def measure(name: str, url: str, body: str, connections: int, seconds: int) -> LoadResult:
        events.append(f"{name} {seconds} s")
        return LoadResult(name, connections, 1.0, 1.0, 1.0, 0)

    monkeypatch.setattr(haproxy_ab, "restarted_with", restarted_with)
    monkeypatch.setattr(haproxy_ab.os, "sched_getaffinity", lambda pid: {0, 1})
    cost = haproxy_ab.measure_cost(ab.Load("u", "{}", 10, 30, rounds=2, measure=measure))
    assert [e for e in events if e.startswith("restart")] == ["restart 4", "restart 2"] * 2
    assert events[:3] == ["restart 4", "HAProxy 4 threads 30 s", "HAProxy 4 threads 10 s"]
    assert {key: len(runs) for key, runs in cost.items()} == {"ray-default": 2, "per-core": 2}


def test_the_report_gives_one_thread_per_core_against_rays_default():
    def run(rate: float) -> dict:
        return {"requests_per_s": rate, "p50_ms": 5.0, "p99_ms": 9.0, "cpu_ms_per_request": 0.7}

    cost = {
        "per-core": [run(r) for r in (2_200, 2_300, 2_100)],
        "ray-default": [run(r) for r in (2_000, 1_900, 2_050)],
    }
    text = "\n".join(haproxy_ab.report_lines(cost, 2))
    assert "| 2 (one per core) | 3 | 2200 | 2100-2300 |" in text
    assert "| 4 (Ray's default) | 3 | 2000 | 1900-2050 |" in text
    assert "gives 1.10x the requests/s of Ray Serve's default of 4 threads" in text
    assert "one per core is the default" in text
    slower = {**cost, "per-core": [run(r) for r in (1_800, 1_850, 1_700)]}
    assert "does not support the default" in "\n".join(haproxy_ab.report_lines(slower, 2))
    assert haproxy_ab.report_lines(None, 2) == []
