"""The rollout A/B of the serving benchmark without a stack: the traffic of each side, the
alternation of the rounds and the restore, the candidate's choice, and its report lines."""

from __future__ import annotations

import pytest

from benchmarks.ab import ROUNDS, Load
from benchmarks.bench_serving import report
from benchmarks.load import LoadResult
from benchmarks.rollout_ab import NONE, measure_cost, other_version, report_lines, traffic
from services.inference_log import CANARY, SHADOW
from serving.routing import RolloutTraffic
from tests.bench_results import results as bench_results

pytestmark = pytest.mark.unit


def run(rate: float, p99: float = 10.0) -> dict[str, float]:
    return {"requests_per_s": rate, "p50_ms": 5.0, "p99_ms": p99, "cpu_ms_per_request": 0.7}


COST = {
    NONE: [run(2_900.0), run(3_100.0)],
    SHADOW: [run(1_700.0, 15.0), run(1_900.0, 17.0)],
    CANARY: [run(2_950.0, 10.0), run(2_850.0, 12.0)],
}


def test_each_side_is_the_first_step_of_its_traffic():
    assert traffic(NONE, "3") is None
    assert traffic(SHADOW, "3") == RolloutTraffic(candidate="3", mode=SHADOW, weight=100, step=1)
    canary = traffic(CANARY, "3")
    assert canary == RolloutTraffic(candidate="3", mode=CANARY, weight=10, step=1)
    assert RolloutTraffic.parse(canary.config(), "rollout") == canary  # as the app reads it


def test_rounds_alternate_the_three_settings_each_deployed_before_its_warm_up():
    events: list[tuple[str, ...]] = []

    def apply(stable: str, rollout: RolloutTraffic | None) -> None:
        assert stable == "2"
        events.append(("deploy", NONE if rollout is None else f"{rollout.mode} {rollout.weight:g}"))

    def measure(name: str, url: str, body: str, connections: int, seconds: int) -> LoadResult:
        assert (url, body, connections) == ("http://x/predict", "{}", 16)
        events.append(("measure", name, str(seconds)))
        return LoadResult(name, connections, float(len(events)), 1.0, 2.0, 0)

    load = Load("http://x/predict", "{}", duration_s=10, warmup_s=30, measure=measure)
    cost = measure_cost("2", "1", load, apply=apply)

    one_round = [
        ("deploy", NONE),
        ("measure", "no rollout", "30"),
        ("measure", "no rollout", "10"),
        ("deploy", "shadow 100"),
        ("measure", "shadow 100%", "30"),
        ("measure", "shadow 100%", "10"),
        ("deploy", "canary 10"),
        ("measure", "canary 10%", "30"),
        ("measure", "canary 10%", "10"),
    ]
    assert events == one_round * ROUNDS + [("deploy", NONE)]  # restored at the end
    assert [r.name for r in cost.none + cost.shadow + cost.canary] == [
        name for name in ("no rollout", "shadow 100%", "canary 10%") for _ in range(ROUNDS)
    ]
    assert cost.none[0].requests_per_s < cost.none[1].requests_per_s  # kept in round order


def test_the_manifest_is_restored_to_no_rollout_when_a_round_fails():
    applied: list[RolloutTraffic | None] = []

    def apply(_stable: str, rollout: RolloutTraffic | None) -> None:
        applied.append(rollout)

    def measure(name: str, *_: object) -> LoadResult:
        if name.startswith(SHADOW):
            raise RuntimeError("wrk failed")
        return LoadResult(name, 16, 1.0, 1.0, 1.0, 0)

    with pytest.raises(RuntimeError, match="wrk failed"):
        measure_cost("2", "1", Load("u", "{}", 1, 1, rounds=1, measure=measure), apply)
    assert [t if t is None else t.mode for t in applied] == [None, SHADOW, None]


def test_the_candidate_is_the_newest_other_registered_version():
    assert other_version("2", ["1", "2", "10", "3"]) == "10"
    assert other_version("10", ["1", "2", "10"]) == "2"
    assert other_version("1", ["1"]) is None


def test_report_states_what_a_rollout_costs():
    text = "\n".join(report_lines(COST))
    assert "## What a rollout costs" in text
    assert "| traffic | rounds | requests/s | min-max | p50 ms | p99 ms | CPU ms/request |" in text
    assert "| no rollout | 2 | 3000 | 2900-3100 | 5.00 | 10.00 | 0.70 |" in text
    assert "| shadow 100% | 2 | 1800 | 1700-1900 | 5.00 | 16.00 | 0.70 |" in text
    assert "| canary 10% | 2 | 2900 | 2850-2950 | 5.00 | 11.00 | 0.70 |" in text
    assert "- shadow 100%: 0.60x the requests/s and 1.60x the p99 of no rollout." in text
    assert "- canary 10%: 0.97x the requests/s and 1.10x the p99 of no rollout." in text
    assert "the candidate scores the same body on the same replica after the response" in text
    assert "One request in ten is answered by the candidate" in text
    assert report_lines(None) == []  # results of runs before the A/B existed


def test_the_benchmark_report_has_the_rollout_section_after_the_telemetry_one():
    results = bench_results(telemetry={"on": [run(2_850.0)], "off": [run(2_950.0)]}, rollout=COST)
    text = report(results)
    assert text.index("## What request telemetry costs") < text.index("## What a rollout costs")
    assert text.index("## What a rollout costs") < text.index("## Pipeline and operations")
    assert "## What a rollout costs" not in report(
        {k: v for k, v in results.items() if k != "rollout"}
    )
