"""The real-time bench without servers: rounds, the direct replica's address, the table, the
targets' verdicts and the breakdown of a request's time."""

from __future__ import annotations

import os

import pytest

from benchmarks import breakdown, realtime
from benchmarks.load import LoadResult
from tests.bench_results import realtime_entry

pytestmark = pytest.mark.unit

HAPROXY_CFG = """backend http-fraud-detection
    server SERVE_REPLICA_fraud-detection-Batch-aa 127.0.0.1:30007 check
    server SERVE_REPLICA_fraud-detection-Realtime-fmsq 127.0.0.1:30000 check observe layer4
    server SERVE_PROXY_ACTOR-fallback-5d5c 127.0.0.1:8500 check backup
"""


def test_the_direct_url_names_a_realtime_replica_of_the_newest_configuration(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for folder, port in ((old, "30099"), (new, "30000")):
        folder.mkdir()
        (folder / "haproxy.cfg").write_text(HAPROXY_CFG.replace("30000", port))
    os.utime(old / "haproxy.cfg", (1, 1))
    url = realtime.replica_url("fraud-detection", "predict", tmp_path)
    assert url == "http://127.0.0.1:30000/fraud-detection/predict"
    with pytest.raises(LookupError, match="no demand-forecast replica"):
        realtime.replica_url("demand-forecast", "predict", tmp_path)


def test_rounds_go_through_every_server_in_turn_and_resolve_urls_each_round():
    calls: list[tuple[str, str, int, int]] = []
    urls = iter(["u1", "u2", "u3"])

    def load(name: str, url: str, body: str, connections: int, seconds: int) -> LoadResult:
        calls.append((name, url, connections, seconds))
        return LoadResult(name, connections, 100.0 * len(calls), 1.0, 2.0, 0, 0.5)

    targets = [
        realtime.Target("a", lambda: next(urls), "{}", "x", "x setup", "ours", warmup_s=30),
        realtime.Target("b", lambda: "ub", "{}", "y", "y setup", connections=(1,)),
    ]
    entries = realtime.measure(targets, 10, rounds=3, load=load)
    names = [(name, url, c, s) for name, url, c, s in calls]
    assert names[:5] == [
        ("a", "u1", 16, 30),  # warm-up
        ("a", "u1", 1, 10),
        ("a", "u1", 16, 10),
        ("b", "ub", 16, realtime.PEER_WARMUP_S),
        ("b", "ub", 1, 10),
    ]
    assert [c[1] for c in calls if c[0] == "a" and c[3] == 30] == ["u1", "u2", "u3"]
    assert [(e["name"], e["connections"], len(e["runs"])) for e in entries] == [
        ("a", 1, 3),
        ("a", 16, 3),
        ("b", 1, 3),
    ]


def test_a_server_that_answers_errors_stops_the_bench_naming_it():
    def load(name: str, url: str, body: str, connections: int, seconds: int) -> LoadResult:
        errors = 0 if name == "fine" else 101  # of 100 requests/s for 10 s: just over 1%
        return LoadResult(name, connections, 100.0, 1.0, 2.0, errors, 0.5)

    fine = realtime.Target("fine", lambda: "uf", "{}", "x", "x setup")
    broken = realtime.Target("broken", lambda: "ub", "{}", "y", "y setup")
    assert len(realtime.measure([fine], 10, rounds=1, load=load)) == 2
    with pytest.raises(RuntimeError, match=r"broken \(ub\) answered 101 of 1,000 requests"):
        realtime.measure([fine, broken], 10, rounds=1, load=load)


def test_an_autoscaled_servers_replicas_are_read_after_each_run_and_reported():
    counts = iter([1, 2, 2, 2])

    def load(name: str, url: str, body: str, connections: int, seconds: int) -> LoadResult:
        return LoadResult(name, connections, 100.0, 1.0, 2.0, 0, 0.5)

    ours = realtime.Target(
        "ours", lambda: "uo", "{}", "x", "x setup", "ours", replicas=lambda: next(counts)
    )
    bare = realtime.Target("bare", lambda: "ub", "{}", "y", "y setup", "bare")
    entries = realtime.measure([ours, bare], 10, rounds=2, load=load)

    assert [[run.get("replicas") for run in e["runs"]] for e in entries] == [
        [1, 2],  # 1 connection, rounds 1 and 2
        [2, 2],  # 16 connections
        [None, None],
        [None, None],
    ]
    text = "\n".join(realtime.report_lines(entries))
    assert "- ours: Realtime replicas running at the end of each 16-connection run" in text
    assert "(autoscaled): 2, 2." in text


ENTRIES = [
    realtime_entry("ours", "ours", 1, [900, 1000, 1100], 1.2, 3.0),
    realtime_entry("ours", "ours", 16, [2600, 2700, 2900], 5.0, 12.0),
    realtime_entry("direct", "ours-direct", 1, [1100, 1200, 1300], 0.9, 2.0),
    realtime_entry("bento", "peer", 1, [500, 500, 500], 2.0, 4.0),
    realtime_entry("bento", "peer", 16, [1000, 1200, 1100], 12.0, 30.0),
    realtime_entry("kserve", "peer", 1, [600, 600, 600], 1.5, 4.0),
    realtime_entry("kserve", "peer", 16, [1700, 1800, 1900], 8.0, 20.0),
    realtime_entry("bare", "bare", 1, [1500, 1500, 1500], 0.6, 1.0),
    realtime_entry("bare", "bare", 16, [3000, 3000, 3000], 4.0, 9.0),
]


def test_the_table_shows_medians_with_the_spread_and_states_each_target():
    text = "\n".join(realtime.report_lines(ENTRIES))
    assert "| ours | 16 | 2700 (2600-2900) | 5.00 (5.00-5.00) | 12.00 (12.00-12.00) | 0 |" in text
    assert "1.50x the requests/s of the best peer (kserve; target >= 1.5x: met)" in text
    assert "90% of the requests/s of bare (target >= 90%: met)" in text
    assert "p99 1.33x its p99 (target <= 1.2x: missed)" in text
    assert "p50 2.00x the bare server's (target <= 1.5x: missed)" in text
    assert "What bounds a missed target is measured below" in text
    assert "| bento | bento setup | bento work |" in text
    assert text.count("| ours | ours setup | ours work |") == 1


def test_the_breakdown_splits_the_p50_into_ingress_steps_and_framework():
    stages = {"validation": 40.0, "predict": 160.0}
    lines = breakdown.report_lines(stages, ENTRIES)
    rows = {line.split(" | ")[0].strip("| *"): line for line in lines if line.startswith("|")}
    assert rows["ingress (HAProxy hop)"].startswith("| ingress (HAProxy hop) | 300 |")
    assert "| 700 |" in rows["replica framework, HTTP and client (the rest)"]
    assert "**1200**" in rows["p50 through the ingress"]
    assert "ONNX Runtime's call" not in "\n".join(lines)
    with_limit = [*ENTRIES, realtime_entry("onnx", "limit", 1, [3000, 3000, 3000], 0.2, 0.5)]
    text = "\n".join(breakdown.report_lines(stages, with_limit))
    assert "600 µs for HTTP, the client, encoding and an `inplace_predict` call, 200 µs" in text
    assert breakdown.report_lines(None, ENTRIES) == []  # results of runs before it existed


def test_no_pointer_to_what_bounds_the_targets_when_every_target_is_met():
    at_bare = [
        realtime_entry("ours", "ours", 1, [1500], 0.6, 1.0),
        realtime_entry("ours", "ours", 16, [3000], 4.0, 9.0),
        *(e for e in ENTRIES if e["kind"] == "bare"),
    ]
    text = "\n".join(realtime.report_lines(at_bare))
    assert "missed" not in text and "What bounds a missed target" not in text


def test_ray_serves_floor_is_set_against_the_bare_server_and_this_project():
    assert "Ray Serve's floor" not in "\n".join(realtime.report_lines(ENTRIES))
    with_floor = [
        *ENTRIES,
        realtime_entry("floor", "floor", 1, [1200, 1250, 1300], 0.9, 2.0),
        realtime_entry("floor", "floor", 16, [2900, 3000, 3100], 4.5, 10.0),
    ]
    text = "\n".join(realtime.report_lines(with_floor))
    assert (
        "- Ray Serve's floor, an application of the same shape that does no work per request: "
        "100% of the requests/s of bare at 16 connections, p50 1.50x its p50 at 1 connection; "
        "this project serves 90% of the floor's requests/s."
    ) in text


def test_the_throughput_bound_splits_the_cpu_beyond_the_bare_server_at_ray_serves_floor():
    def at_16(kind: str, cpu_ms: float) -> dict:
        entry = realtime_entry(kind, kind, 16, [1000])
        entry["runs"][0]["cpu_ms_per_request"] = cpu_ms
        return entry

    without_floor = "\n".join(realtime.bound_lines([at_16("ours", 1.3), at_16("bare", 0.7)], 2))
    assert "1.30 CPU ms per request through this project against 0.70 ms" in without_floor
    assert "about 1,538 requests/s and the bare server at 2,857" in without_floor
    assert "floor" not in without_floor
    text = "\n".join(
        realtime.bound_lines([at_16("ours", 1.3), at_16("floor", 0.8), at_16("bare", 0.7)], 2)
    )
    assert "of the 0.60 ms this project spends beyond the bare server, 0.10 ms is Ray" in text
    assert "and 0.50 ms what this project's request path adds on it" in text
    assert realtime.bound_lines([at_16("bare", 0.7)], 2) == []  # results without this project
