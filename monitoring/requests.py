"""Request records of a window, one row per request, and what they measure per model version.

Answered requests come from the predictions log: their rows share a `request` id, so a /batch
of 100,000 rows is one request, like a /predict of one. Refused and failed requests come from
the `requests` log. Rows logged without a record (logs written before records existed, a
backfill, telemetry switched off) are no evidence about requests and are left out.

The production version is measured in the monitor's window (since its promotion by default);
every other version on its requests from `BASELINE` before that promotion on, so the previous
version's traffic before the swap is the figure a new version is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from monitoring.window import read_since
from services.inference_log import (
    ENDPOINT,
    LATENCY_MS,
    MODEL_VERSION,
    PREDICTIONS_KIND,
    REALTIME_ENDPOINTS,
    REQUEST,
    REQUEST_COLUMNS,
    REQUESTS_KIND,
    STATUS,
    TIMESTAMP,
    VARIANT,
)

BASELINE = timedelta(hours=24)  # how far before a promotion the previous version is measured


@dataclass(frozen=True)
class RequestStats:
    """What one version's requests measured: counts by status class and real-time latency."""

    requests: int
    server_errors: int  # 5xx
    client_errors: int  # 4xx (cancelled requests: 499)
    latency_requests: int  # answered real-time requests: the latency sample
    p50_latency_ms: float | None
    p99_latency_ms: float | None

    @property
    def server_error_rate(self) -> float:
        return self.server_errors / self.requests if self.requests else 0.0

    @property
    def client_error_rate(self) -> float:
        return self.client_errors / self.requests if self.requests else 0.0


def baseline_start(since: datetime, promoted_at: datetime) -> datetime:
    """Where the request records are read from: the window, or the baseline before it."""
    return min(since, promoted_at - BASELINE)


def read_requests(uri: str, service: str, since: datetime) -> pd.DataFrame:
    """One row per request since `since` (columns: `REQUEST_COLUMNS`), answered or not."""
    columns = list(REQUEST_COLUMNS)
    answered = read_since(uri, service, PREDICTIONS_KIND, since, columns)
    if REQUEST in answered:
        answered = answered[answered[REQUEST].notna()]
        # one record per request and variant: a shadowed request's rows repeat its id
        key = [REQUEST, VARIANT] if VARIANT in answered else [REQUEST]
        answered = answered.drop_duplicates(key)
    else:
        answered = answered.iloc[0:0]
    refused = read_since(uri, service, REQUESTS_KIND, since, columns)
    parts = [part.reindex(columns=columns) for part in (answered, refused) if not part.empty]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)


def request_stats(frame: pd.DataFrame) -> RequestStats:
    """The figures of a set of request records (any versions: filter first)."""
    status = pd.to_numeric(frame[STATUS], errors="coerce").fillna(500).astype(int)
    latency_rows = (status < 400) & frame[ENDPOINT].isin(REALTIME_ENDPOINTS)
    latency = pd.to_numeric(frame.loc[latency_rows, LATENCY_MS], errors="coerce").dropna()
    p50, p99 = (None, None)
    if len(latency):
        p50, p99 = (float(v) for v in np.percentile(latency.to_numpy(), [50, 99]))
    return RequestStats(
        requests=len(frame),
        server_errors=int((status >= 500).sum()),
        client_errors=int(((status >= 400) & (status < 500)).sum()),
        latency_requests=len(latency),
        p50_latency_ms=p50,
        p99_latency_ms=p99,
    )


def stats_by_version(
    frame: pd.DataFrame, production: str, since: datetime
) -> dict[str, RequestStats]:
    """Figures per version: the production version's from `since` on, the others' over all of
    `frame` (read from the baseline's start)."""
    if frame.empty:
        return {}
    versions = frame[MODEL_VERSION].astype("string").fillna("none")
    in_window = pd.to_datetime(frame[TIMESTAMP], utc=True) >= pd.Timestamp(since)
    keep = (versions != str(production)) | in_window
    frame, versions = frame[keep], versions[keep]
    return {
        str(version): request_stats(group) for version, group in frame.groupby(versions, sort=True)
    }
