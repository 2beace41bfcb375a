"""Request telemetry against the real stack: records the monitor reads, metrics Prometheus scrapes.

Traffic goes to the session's served fraud-detection (HAProxy ingress, real replicas); the
monitor reads the session's inference log from the test's start on (`--since`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitoring.monitor import MonitorOptions, monitor_service
from monitoring.requests import read_requests
from services.inference_log import read_log
from services.settings import get_settings
from tests.conftest import metrics_report_s
from tests.load import predict_body

pytestmark = pytest.mark.integration
SERVICE = "fraud-detection"
VALID, INVALID = 300, 100  # a quarter of the requests are refused
# The replica's clock runs inside the client's: from the handler's start to the encoded
# response, without the HAProxy hop, the socket and the client's own parsing on loopback.
HOP_TOLERANCE_MS = 10.0  # median client - replica latency allowed
FLUSH_WAIT_S = 30.0


def invalid_bodies(count: int) -> list[bytes]:
    """Bodies a replica refuses: an unknown field (422) and unreadable JSON (400)."""
    unknown = httpx.Request("POST", "/", json=predict_body(SERVICE) | {"extra": 1}).content
    return [unknown if i % 2 else b"{not json" for i in range(count)]


def send(http: httpx.Client, content: bytes) -> tuple[int, float, dict[str, Any]]:
    """Status, latency the client measured (ms), and the answer."""
    started = time.perf_counter()
    response = http.post(
        f"/{SERVICE}/predict", content=content, headers={"content-type": "application/json"}
    )
    elapsed = (time.perf_counter() - started) * 1e3
    return response.status_code, elapsed, response.json()


def metric_counts(url: str) -> dict[tuple[str, str, str], float]:
    """`ray_mlops_requests_total` per (version, endpoint, status) of the service, summed over
    replicas, as Prometheus would scrape it."""
    text = httpx.get(url, timeout=10).text
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "ray_mlops_requests_total" and labels.get("service") == SERVICE:
                key = (labels["version"], labels["endpoint"], labels["status"])
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def settled_counts(url: str, timeout_s: float = 90.0) -> dict[tuple[str, str, str], float]:
    """The counts once earlier traffic is exported (every `metrics_report_s()`, replicas ->
    the node's exporter): equal twice."""
    counts, deadline = metric_counts(url), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(metrics_report_s() + 1)
        counts, previous = metric_counts(url), counts
        if counts == previous:
            break
    return counts


@pytest.fixture(scope="module")
def traffic(served) -> dict[str, Any]:
    """VALID answered and INVALID refused requests, interleaved, one connection."""
    settings = get_settings()
    before = settled_counts(settings.metrics_url)
    start = datetime.now(UTC)
    valid = httpx.Request("POST", "/", json=predict_body(SERVICE)).content
    bodies = [valid] * VALID + invalid_bodies(INVALID)
    np.random.default_rng(5).shuffle(bodies)
    answered: dict[str, float] = {}  # request id -> client latency
    statuses: list[int] = []
    with httpx.Client(base_url=settings.serve_url, timeout=30) as http:
        for body in bodies:
            status, elapsed, answer = send(http, body)
            statuses.append(status)
            if status == 200:
                answered[answer["predictions"][0]["request_id"].rsplit("-", 1)[0]] = elapsed
    return {
        "start": start,
        "before": before,
        "answered": answered,
        "statuses": statuses,
        "version": served[SERVICE],
    }


def records_since(start: datetime, expected: int) -> Any:
    """The request records of the window, once the replicas flushed all `expected`."""
    uri = get_settings().inference_log_uri
    deadline = time.monotonic() + FLUSH_WAIT_S
    while True:
        records = read_requests(uri, SERVICE, start)
        if len(records) >= expected or time.monotonic() > deadline:
            return records
        time.sleep(1)


def test_traffic_was_answered_and_refused_as_sent(traffic):
    assert sorted(set(traffic["statuses"])) == [200, 400, 422]
    assert traffic["statuses"].count(200) == VALID == len(traffic["answered"])


def test_the_monitor_counts_the_share_of_refused_requests(traffic):
    records_since(traffic["start"], VALID + INVALID)
    result = monitor_service(SERVICE, MonitorOptions(since=traffic["start"].isoformat()))

    stats = result.measurements.requests
    assert stats is not None
    assert (stats.requests, stats.client_errors, stats.server_errors) == (400, INVALID, 0)
    assert stats.client_error_rate == INVALID / (VALID + INVALID) == 0.25
    (production,) = [v for v in result.to_json()["slo"]["versions"] if v["role"] == "production"]
    assert production["client_error_rate"] == 0.25 and production["requests"] == 400
    assert production["status"] == "met"  # 400 requests >= min_requests, p99 far below 100 ms
    markdown = result.summary_md.read_text()
    assert f"| v{traffic['version']} (production) | 400 |" in markdown
    assert "| 25.00% | met |" in markdown


def test_the_latency_the_replica_records_agrees_with_the_clients(traffic):
    records = records_since(traffic["start"], VALID + INVALID)
    replica = records.set_index("request")["latency_ms"]
    client = traffic["answered"]
    pairs = [(client[key], float(replica[key])) for key in client]
    gaps = np.array([c - r for c, r in pairs])
    assert len(pairs) == VALID
    assert (gaps > 0).all(), f"a replica latency above the client's: {gaps.min():.3f} ms"
    assert np.median(gaps) < HOP_TOLERANCE_MS, f"median gap {np.median(gaps):.2f} ms"
    p99_replica = np.percentile([r for _, r in pairs], 99)
    p99_client = np.percentile([c for c, _ in pairs], 99)
    print(
        f"p50 replica {np.median([r for _, r in pairs]):.2f} ms, client "
        f"{np.median([c for c, _ in pairs]):.2f} ms; p99 replica {p99_replica:.2f} ms, client "
        f"{p99_client:.2f} ms; gap median {np.median(gaps):.2f} ms, max {gaps.max():.2f} ms"
    )
    assert p99_replica <= p99_client


def test_prometheus_shows_the_per_version_series_after_traffic(traffic):
    url, version = get_settings().metrics_url, traffic["version"]
    expected = {
        (version, "predict", "200"): VALID,
        (version, "predict", "400"): INVALID / 2,
        (version, "predict", "422"): INVALID / 2,
    }
    deadline = time.monotonic() + max(60.0, 6 * metrics_report_s())
    while True:
        after = metric_counts(url)
        grown = {key: after.get(key, 0.0) - traffic["before"].get(key, 0.0) for key in expected}
        if grown == expected or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert grown == expected
    text = httpx.get(url, timeout=10).text
    assert "ray_mlops_request_latency_ms_bucket" in text
    assert f'version="{version}"' in text and 'application="fraud-detection"' in text


def test_refused_requests_keep_no_body(traffic):
    refused = read_log(get_settings().inference_log_uri, SERVICE, "requests", traffic["start"])
    assert len(refused) >= INVALID
    assert not {"amount", "records", "body"} & set(refused.columns)
    assert refused["error"].str.len().max() <= 200


def test_the_benchmarks_switch_turns_the_replicas_records_off_and_on_again(traffic):
    """benchmarks/telemetry_ab.py redeploys with MLOPS_REQUEST_TELEMETRY=0, then without."""
    from benchmarks.load import LoadResult
    from benchmarks.telemetry_ab import measure_cost

    settings = get_settings()
    url = f"{settings.serve_url}/{SERVICE}/predict"
    body = httpx.Request("POST", "/", json=predict_body(SERVICE)).content.decode()
    sent: dict[str, list[str]] = {"off": [], "on": []}

    def measure(name: str, url: str, body: str, connections: int, _s: int) -> LoadResult:
        side = name.rsplit(" ", 1)[1]
        with httpx.Client(timeout=30) as http:
            for _ in range(5):
                answer = http.post(url, content=body, headers={"content-type": "application/json"})
                sent[side].append(answer.json()["predictions"][0]["request_id"])
        return LoadResult(name, connections, 1.0, 1.0, 1.0, 0)

    cost = measure_cost(url, body, duration_s=1, warmup_s=1, rounds=1, measure=measure)
    assert [r.name for r in cost.off + cost.on] == [
        "request telemetry off",
        "request telemetry on",
    ]
    deadline = time.monotonic() + FLUSH_WAIT_S
    while True:
        rows = read_log(settings.inference_log_uri, SERVICE, "predictions", traffic["start"])
        rows = rows.set_index("request_id")
        if set(sent["off"] + sent["on"]) <= set(rows.index) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert rows.loc[sent["off"], "request"].isna().all()  # logged, without a record
    assert rows.loc[sent["on"], "request"].notna().all()
