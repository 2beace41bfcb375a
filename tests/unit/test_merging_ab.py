"""The request-merging A/B of the serving benchmark without a stack: its rounds and its report."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from benchmarks import ab, merging_ab
from benchmarks.load import LoadResult
from services.spec import RequestMerging, load_spec

pytestmark = pytest.mark.unit


def test_rounds_alternate_the_sides_leaving_the_specs_setting_deployed(monkeypatch):
    events: list[str] = []

    @contextlib.contextmanager
    def merging_deployed(merging: RequestMerging, health_url: str) -> Iterator[None]:
        events.append(f"deploy {merging.max_requests}/{merging.wait_ms:g} checked at {health_url}")
        yield

    def measure(name: str, url: str, body: str, connections: int, seconds: int) -> LoadResult:
        return LoadResult(name, connections, 1.0, 1.0, 1.0, 0)

    monkeypatch.setattr(merging_ab, "merging_deployed", merging_deployed)
    cost = merging_ab.measure_cost(ab.Load("u", "{}", 10, 30, rounds=2, measure=measure), "h")
    spec = load_spec(merging_ab.SERVICE).serving.request_merging
    own = f"deploy {spec.max_requests}/{spec.wait_ms:g} checked at h"
    assert events == ["deploy 1/0 checked at h", "deploy 64/2 checked at h", own] * 2
    assert {key: len(runs) for key, runs in cost.items()} == {
        "none": 2,
        "wait": 2,
        merging_ab.SPEC: 2,
    }


def test_the_report_gives_the_ratios_and_whether_the_spec_is_fastest():
    def run(rate: float) -> dict:
        return {"requests_per_s": rate, "p50_ms": 5.0, "p99_ms": 9.0, "cpu_ms_per_request": 0.7}

    cost = {
        "none": [run(r) for r in (1_000, 1_100, 900)],
        "wait": [run(r) for r in (1_500, 1_400, 1_600)],
        merging_ab.SPEC: [run(r) for r in (2_000, 2_100, 500)],  # one disturbed round
    }
    text = "\n".join(merging_ab.report_lines(cost))
    assert "| up to 64 requests per call, no wait | 3 | 2000 | 500-2100 |" in text
    assert "| no merging (1 request per call) | 3 | 1000 |" in text
    assert "2.00x the requests/s of one model call per request" in text
    assert "waiting 2 ms for company 0.75x the spec's" in text
    assert "the spec's setting is the fastest side" in text
    slower = {**cost, merging_ab.SPEC: [run(r) for r in (800, 700, 600)]}
    assert "fastest side is up to 64 requests per call, 2 ms wait" in "\n".join(
        merging_ab.report_lines(slower)
    )
    assert merging_ab.report_lines(None) == []
