"""SLO rules on constructed inference logs: request records -> figures per version -> decision."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pyarrow as pa
import pytest

from monitoring.decision import Action, Measurements, decide
from monitoring.requests import (
    RequestStats,
    baseline_start,
    read_requests,
    request_stats,
    stats_by_version,
)
from monitoring.slo import SloStatus, judge
from services.inference_log import write_part
from tests.constructed import HEALTHY, NOW
from tests.constructed import THRESHOLDS as T

pytestmark = pytest.mark.unit
SERVICE = "svc"
PROMOTED = NOW - timedelta(hours=2)  # HEALTHY's production v2 was promoted 2 h ago


class Log:
    """A constructed inference log: answered requests (rows in `predictions`, sharing their
    request id) and refused ones (one row each in `requests`), as serving writes them."""

    def __init__(self, uri: str) -> None:
        self.uri, self.count = uri, 0

    def _record(self, version, status, latency_ms, when, endpoint, rows) -> dict:
        self.count += 1
        return {
            "request": f"r{self.count}",
            "timestamp": when,
            "service": SERVICE,
            "endpoint": endpoint,
            "model_version": version,
            "variant": "stable",
            "status": status,
            "rows": rows,
            "latency_ms": latency_ms,
        }

    def answered(self, version, n, latency_ms, when, endpoint="predict", rows=1) -> None:
        out = []
        for _ in range(n):
            record = self._record(version, 200, latency_ms, when, endpoint, rows)
            out += [
                {"request_id": f"{record['request']}-{i}", **record, "x": 1.0, "prediction": 0}
                for i in range(rows)
            ]
        write_part(self.uri, SERVICE, "predictions", pa.Table.from_pylist(out), "test")

    def refused(self, version, n, status, when, endpoint="predict") -> None:
        out = [
            self._record(version, status, 0.3, when, endpoint, 0) | {"error": "refused"}
            for _ in range(n)
        ]
        write_part(self.uri, SERVICE, "requests", pa.Table.from_pylist(out), "test")


@pytest.fixture
def log(tmp_path) -> Log:
    return Log(str(tmp_path / "log"))


def measured(log: Log, m: Measurements = HEALTHY, since: datetime = PROMOTED) -> Measurements:
    """What the monitor reads: per-version figures from the log, into the measurements
    (production v2 from `since`, the monitor's window; v1 from the baseline before)."""
    frame = read_requests(log.uri, SERVICE, baseline_start(since, PROMOTED))
    stats = stats_by_version(frame, m.production_version, since)
    return replace(m, requests=stats.get("2"), previous_requests=stats.get("1"))


def before(hours: float) -> datetime:
    return PROMOTED - timedelta(hours=hours)


def after(hours: float) -> datetime:
    return PROMOTED + timedelta(hours=hours)


def test_a_latency_breach_after_promotion_that_the_previous_version_met_reverts(log):
    log.answered("1", 300, latency_ms=4.0, when=before(3))
    log.answered("2", 300, latency_ms=250.0, when=after(1))

    decision = decide(measured(log), T)

    assert decision.action is Action.REVERT
    assert (
        "v2 breaches its SLO: p99 latency 250.0 ms (300 answered real-time requests)"
        in (decision.reasons[0])
    )
    assert "> 100 ms, which previous v1 met (p99 latency 4.0 ms" in decision.reasons[0]
    assert "previous version is v1" in decision.reasons[-1]
    assert decision.slo_breaches == (
        "p99 latency 250.0 ms (300 answered real-time requests) > 100 ms",
    )


def test_failing_every_request_reverts_though_no_row_was_answered(log):
    """5xx on every request: nothing in the predictions log, the requests log decides."""
    log.answered("1", 300, latency_ms=4.0, when=before(3))
    log.refused("2", 250, status=500, when=after(1))

    decision = decide(measured(log, replace(HEALTHY, rows=0, feature_drift_share=None)), T)

    assert decision.action is Action.REVERT  # before insufficient-data
    assert "5xx rate 100.00% (250 of 250 requests) > 1.00%" in decision.reasons[0]
    assert "previous v1 met (5xx rate 0.00% (0 of 300 requests)" in decision.reasons[0]


def test_a_breach_with_too_few_requests_decides_nothing(log):
    log.answered("1", 300, latency_ms=4.0, when=before(3))
    log.refused("2", 150, status=500, when=after(1))  # every one failed, but 150 < 200

    m = measured(log)
    decision = decide(m, T)

    assert decision.action is Action.NONE and decision.slo_breaches == ()
    assert judge("2", m.requests, T.slo).status is SloStatus.TOO_FEW_REQUESTS
    assert "SLOs not judged: 150 requests of v2 in the window, fewer than min_requests 200" in (
        decision.notes
    )


def test_a_breach_outside_the_revert_window_is_reported_only(log):
    log.answered("2", 400, latency_ms=180.0, when=NOW - timedelta(hours=1))

    m = measured(log, replace(HEALTHY, hours_since_promotion=100.0), NOW - timedelta(hours=24))
    decision = decide(m, T)

    assert decision.action is Action.NONE
    assert decision.slo_breaches == (
        "p99 latency 180.0 ms (400 answered real-time requests) > 100 ms",
    )
    assert any(
        "SLO breached by v2: p99 latency 180.0 ms" in note
        and "reported only (promoted outside the 72 h revert window)" in note
        for note in decision.notes
    )


@pytest.mark.parametrize(
    ("previous_requests", "previous_ms", "why"),
    [(300, 150.0, "previous v1 breached it too"), (20, 4.0, "previous v1 not judged (too-few")],
)
def test_a_breach_without_a_baseline_met_before_is_reported_only(
    log, previous_requests, previous_ms, why
):
    log.answered("1", previous_requests, latency_ms=previous_ms, when=before(3))
    log.answered("2", 300, latency_ms=160.0, when=after(1))

    decision = decide(measured(log), T)

    assert decision.action is Action.NONE and decision.slo_breaches
    assert any(f"reported only ({why}" in note for note in decision.notes)


def test_the_previous_version_is_measured_on_the_day_before_the_promotion(log):
    log.answered("1", 300, latency_ms=4.0, when=before(30))  # older than the baseline
    log.answered("2", 300, latency_ms=250.0, when=after(1))

    m = measured(log)

    assert m.previous_requests is None
    assert decide(m, T).action is Action.NONE


def test_client_errors_are_reported_but_no_slo(log):
    log.answered("2", 270, latency_ms=3.0, when=after(1))
    log.refused("2", 30, status=422, when=after(1))

    stats = measured(log).requests

    assert stats is not None
    assert (stats.requests, stats.client_errors, stats.server_errors) == (300, 30, 0)
    assert stats.client_error_rate == pytest.approx(0.1)
    assert judge("2", stats, T.slo).status is SloStatus.MET


def test_a_batch_request_is_one_request_and_outside_the_latency_objective(log):
    log.answered("2", 250, latency_ms=2.0, when=after(1))
    log.answered("2", 3, latency_ms=900.0, when=after(1), endpoint="batch", rows=5_000)

    stats = measured(log).requests

    assert stats is not None and stats.requests == 253  # not 15,250 rows
    assert stats.latency_requests == 250 and stats.p99_latency_ms == pytest.approx(2.0)


def test_rows_logged_without_a_request_record_are_not_requests(tmp_path):
    uri = str(tmp_path / "log")
    rows = [{"request_id": f"b{i}", "timestamp": NOW, "model_version": "2"} for i in range(50)]
    write_part(uri, SERVICE, "predictions", pa.Table.from_pylist(rows), "backfill")

    assert read_requests(uri, SERVICE, NOW - timedelta(hours=1)).empty
    m = replace(HEALTHY, requests=None)
    assert "SLOs not judged: no request records of v2 in the window" in decide(m, T).notes


def test_percentiles_and_rates_of_constructed_records():
    import pandas as pd

    frame = pd.DataFrame(
        {
            "endpoint": ["predict"] * 98 + ["invocations", "batch"],
            "status": [200] * 97 + [503, 200, 200],
            "latency_ms": [*range(1, 98), 5_000.0, 50.0, 9_999.0],
        }
    )
    stats = request_stats(frame)
    assert stats == RequestStats(
        requests=100,
        server_errors=1,
        client_errors=0,
        latency_requests=98,  # the 503 and the batch request are no latency sample
        p50_latency_ms=stats.p50_latency_ms,
        p99_latency_ms=stats.p99_latency_ms,
    )
    assert stats.p50_latency_ms == pytest.approx(49.5)
    assert 96 < stats.p99_latency_ms < 97 and stats.server_error_rate == 0.01
