"""The telemetry A/B of the serving benchmark without a stack: the alternation of its rounds."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from benchmarks import telemetry_ab
from benchmarks.load import LoadResult

pytestmark = pytest.mark.unit


def test_rounds_alternate_off_and_on_each_deployed_before_its_warm_up(monkeypatch):
    events: list[str] = []

    @contextlib.contextmanager
    def telemetry(enabled: bool) -> Iterator[None]:
        events.append(f"deploy {'on' if enabled else 'off'}")
        yield

    def measure(name: str, url: str, body: str, connections: int, seconds: int) -> LoadResult:
        events.append(f"{name} {seconds} s")
        return LoadResult(name, connections, 1.0, 1.0, 1.0, 0)

    monkeypatch.setattr(telemetry_ab, "telemetry", telemetry)
    cost = telemetry_ab.measure_cost("u", "{}", 10, 30, rounds=2, measure=measure)
    one_round = [
        "deploy off",
        "request telemetry off 30 s",
        "request telemetry off 10 s",
        "deploy on",
        "request telemetry on 30 s",
        "request telemetry on 10 s",
    ]
    assert events == one_round * 2
    assert [r.name for r in cost.off] == ["request telemetry off"] * 2
    assert [r.name for r in cost.on] == ["request telemetry on"] * 2


def test_one_disturbed_round_does_not_move_the_figure():
    from benchmarks.telemetry_ab import report_lines

    def run(rate: float) -> dict:
        return {"requests_per_s": rate, "p50_ms": 5.0, "p99_ms": 12.0, "cpu_ms_per_request": 0.7}

    cost = {
        "on": [run(r) for r in (1_400, 1_405, 1_394)],
        "off": [run(r) for r in (995, 1_410, 1_420)],
    }
    text = "\n".join(report_lines(cost))
    assert "| off | 3 | 1410 |" in text  # the median round, not the 995 one
    assert "cost 0.7% of the requests/s" in text
