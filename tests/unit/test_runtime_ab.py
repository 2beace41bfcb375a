"""The runtime A/B of the serving benchmark without a stack: its rounds and its report."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from benchmarks import ab, runtime_ab
from benchmarks.load import LoadResult

pytestmark = pytest.mark.unit


def test_rounds_alternate_the_runtimes_at_16_then_1_connection_leaving_onnx(monkeypatch):
    events: list[str] = []

    @contextlib.contextmanager
    def serving_with(runtime: str, health_url: str) -> Iterator[None]:
        events.append(f"deploy {runtime} checked at {health_url}")
        yield

    def measure(name: str, url: str, body: str, connections: int, seconds: int) -> LoadResult:
        events.append(f"{name} {connections} conn {seconds} s")
        return LoadResult(name, connections, 1.0, 1.0, 1.0, 0)

    monkeypatch.setattr(runtime_ab, "serving_with", serving_with)
    load = ab.Load("u", "{}", 10, 30, rounds=2, measure=measure)
    cost = runtime_ab.measure_cost(load, "h")
    deploys = [e.split()[1] for e in events if e.startswith("deploy")]
    assert deploys == ["xgboost", "onnx"] * 4  # 2 rounds at 16, then 2 at 1 connection
    assert events[:3] == [
        "deploy xgboost checked at h",
        "runtime xgboost 16 conn 30 s",
        "runtime xgboost 16 conn 10 s",
    ]
    assert events[-1] == "runtime onnx 1 conn 10 s"
    assert {k: {r.connections for r in runs} for k, runs in cost.items()} == {
        "xgboost": {16},
        "onnx": {16},
        "single-xgboost": {1},
        "single-onnx": {1},
    }


def test_the_report_gives_the_ratios_and_whether_they_support_the_default():
    def run(rate: float, p50: float) -> dict:
        return {"requests_per_s": rate, "p50_ms": p50, "p99_ms": 9.0, "cpu_ms_per_request": 0.7}

    cost = {
        "xgboost": [run(r, 5.0) for r in (2_000, 2_100, 1_900)],
        "onnx": [run(r, 4.0) for r in (2_500, 2_600, 1_000)],  # one disturbed round
        "single-xgboost": [run(900, p) for p in (1.0, 1.1, 0.9)],
        "single-onnx": [run(1_100, p) for p in (0.8, 0.85, 0.9)],
    }
    text = "\n".join(runtime_ab.report_lines(cost))
    assert "| onnx | 3 | 2500 | 1000-2600 |" in text
    assert "1.25x the requests/s" in text and "0.85x its p50 at 1 connection" in text
    assert "the default's choice holds" in text
    slower = {**cost, "onnx": [run(r, 4.0) for r in (1_500, 1_600, 1_400)]}
    assert "does not support the default (onnx)" in "\n".join(runtime_ab.report_lines(slower))
    assert runtime_ab.report_lines(None) == []
