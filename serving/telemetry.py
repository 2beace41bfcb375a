"""Request telemetry of a replica: a record of every request, and Prometheus metrics per version.

An answered request's record rides on its rows in the predictions log (`answered` returns the
columns to merge into them); a refused or failed one (4xx, 5xx, cancelled) is one row of the
`requests` log (`refused`). Both count the request by status and observe its latency through
Ray Serve's metrics API: `ray_mlops_requests_total` and `ray_mlops_request_latency_ms_bucket`
on the node's Prometheus endpoint, tagged service, version, variant, endpoint, status (and
Serve's own deployment, replica, application). Per request: two metric calls and a few dict
entries, no work per row. `MLOPS_REQUEST_TELEMETRY=0` turns it all off (for benchmarking its cost).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ray.serve.metrics import Counter, Histogram

from services.inference_log import (
    ENDPOINT,
    ERROR,
    LATENCY_MS,
    MODEL_VERSION,
    REQUEST,
    REQUESTS_KIND,
    ROWS,
    SERVICE,
    STABLE,
    STATUS,
    TIMESTAMP,
    VARIANT,
    Endpoint,
    Variant,
)
from serving.api import RequestError, new_request, now
from serving.log_writer import InferenceLogWriter, log_writer

REQUESTS_METRIC = "mlops_requests"  # exported as ray_mlops_requests_total
LATENCY_METRIC = "mlops_request_latency_ms"  # exported as ray_mlops_request_latency_ms_bucket
TAG_KEYS = ("service", "version", "variant", "endpoint", "status")
# fine around the few milliseconds a real-time request takes, coarse up to /batch's seconds
LATENCY_BOUNDARIES_MS = [
    *(0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750),
    *(1_000, 2_000, 5_000, 10_000, 30_000, 60_000),
]
ANSWERED = 200
CANCELLED = 499  # cancelled in the replica: the client left or the ingress timed out (Ray's code)
FAILED = 500
MAX_ERROR_CHARS = 200


def status_of(exc: BaseException) -> int:
    """The HTTP status a request ends with when `exc` ends its handler."""
    if isinstance(exc, RequestError):
        return exc.status
    return CANCELLED if isinstance(exc, asyncio.CancelledError) else FAILED


def error_text(exc: BaseException) -> str:
    """Why a request was refused or failed, bounded (a RequestError's message, else the type)."""
    if isinstance(exc, RequestError):
        text = exc.message
    elif isinstance(exc, asyncio.CancelledError):
        text = "cancelled before the response was ready"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text[:MAX_ERROR_CHARS]


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1e3


def started_at(arrived: float) -> float:
    """A wall-clock arrival (`time.time()` in the ingress) on this process's perf_counter."""
    return time.perf_counter() - max(time.time() - arrived, 0.0)


class RequestTelemetry:
    """Records and metrics of one replica's requests (one writer of the `requests` log)."""

    def __init__(self, service: str, writer_id: str, enabled: bool = True) -> None:
        self.service, self.enabled = service, enabled
        self._log: InferenceLogWriter | None = None
        if enabled:
            self._log = log_writer(service, REQUESTS_KIND, writer_id)
            self._count = Counter(
                REQUESTS_METRIC,
                "Requests by service, model version, endpoint and status.",
                TAG_KEYS,
            )
            self._latency = Histogram(
                LATENCY_METRIC,
                "Latency in the replica (ms), from a request's arrival to its response ready.",
                LATENCY_BOUNDARIES_MS,
                TAG_KEYS,
            )

    def answered(
        self,
        endpoint: Endpoint,
        version: str,
        request: str,
        rows: int,
        started: float,
        variant: Variant = STABLE,
    ) -> dict[str, Any]:
        """Count an answered request; its record's columns, for each of its logged rows."""
        if not self.enabled:
            return {}
        latency = elapsed_ms(started)
        self._observe(endpoint, version, variant, ANSWERED, latency)
        return {
            REQUEST: request,
            VARIANT: variant,
            STATUS: ANSWERED,
            ROWS: rows,
            LATENCY_MS: latency,
        }

    def refused(
        self,
        endpoint: Endpoint,
        version: str | None,
        exc: BaseException,
        started: float,
        variant: Variant = STABLE,
    ) -> int:
        """Count and log a request that `exc` ended (no body kept); returns its status."""
        status = status_of(exc)
        if self._log is None:  # telemetry off
            return status
        latency = elapsed_ms(started)
        self._observe(endpoint, version, variant, status, latency)
        self._log.append_rows(
            [
                {
                    REQUEST: new_request(),
                    TIMESTAMP: now(),
                    SERVICE: self.service,
                    ENDPOINT: endpoint,
                    MODEL_VERSION: version,
                    VARIANT: variant,
                    STATUS: status,
                    ROWS: 0,
                    LATENCY_MS: latency,
                    ERROR: error_text(exc),
                }
            ]
        )
        return status

    def _observe(
        self, endpoint: str, version: str | None, variant: Variant, status: int, latency: float
    ) -> None:
        values = (self.service, version or "none", variant, endpoint, str(status))
        tags = dict(zip(TAG_KEYS, values, strict=True))
        self._count.inc(1.0, tags)
        self._latency.observe(latency, tags)

    def close(self) -> int:
        """Write what is buffered (the replica's graceful shutdown)."""
        return 0 if self._log is None else self._log.close()
