"""Stored benchmark results as `make bench` writes them to results.json, for report tests."""

from __future__ import annotations

from typing import Any


def realtime_entry(
    name: str, kind: str, connections: int, rates: list[float], p50: float = 1.0, p99: float = 5.0
) -> dict[str, Any]:
    """One server at one connection count, a round per rate."""
    runs = [
        {"requests_per_s": r, "p50_ms": p50, "p99_ms": p99, "non_2xx": 0, "cpu_ms_per_request": 1}
        for r in rates
    ]
    return {
        "name": name,
        "kind": kind,
        "does": f"{name} work",
        "setup": f"{name} setup",
        "connections": connections,
        "runs": runs,
    }


def results(**sections: Any) -> dict[str, Any]:
    """A whole run's results (ours 2,000, mlflow 500, bare 3,000 requests/s), `sections` added."""
    servers = (("ours", "ours", 2000.0), ("mlflow", "peer", 500.0), ("bare", "bare", 3000.0))
    realtime = [
        realtime_entry(name, kind, connections, [rate])
        for name, kind, rate in servers
        for connections in (1, 16)
    ]
    return {
        "cores": 2,
        "realtime": realtime,
        "batch": {"in_process": 1e6, "endpoint": 6e5, "endpoint_json": 4e5, "batch_score": 5e5},
        "pipeline": {"data_init_s": 5, "repro_cold_s": 40, "repro_warm_s": 2}
        | {"warm_was_noop": True},
        "promote_s": 12.0,
        "monitor": {"rows": 100_000, "monitor_s": 9, "peak_rss_mib": 700},
    } | sections
