"""Traffic simulator: real HTTP requests to a service's endpoints, with rows from its data
generator, or sampled from its snapshot when it has none (services/traffic.py).

POST {serve_url}/{service}/predict   {"records": [...]}  (batches of `batch_size` rows)
  -> {"model_version": "N", "predictions": [{"request_id", "prediction", "probability"?}]}
POST {serve_url}/{service}/feedback  {"request_id": ..., "label": <true target>}  (optional)
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd

from services.datagen import Drift
from services.inference_log import LABEL, MODEL_VERSION, REQUEST_ID
from services.schema import frame_to_records
from services.spec import ServiceSpec
from services.traffic import traffic_rows
from serving.protocol import PREDICTIONS, RECORDS

log = logging.getLogger(__name__)
Progress = Callable[[int], None]  # called with the number of rows just handled


@dataclass(frozen=True)
class SimulationConfig:
    rows: int
    drift: Drift = "none"
    feedback: bool = False
    batch_size: int = 20
    seed: int = 0
    concurrency: int = 4
    timeout_s: float = 30.0


@dataclass
class SimulationResult:
    sent: int = 0  # rows predicted successfully
    failed: int = 0  # rows whose predict request failed
    feedback_sent: int = 0
    feedback_failed: int = 0
    versions: Counter[str] = field(default_factory=Counter)  # rows per model version
    errors: Counter[str] = field(default_factory=Counter)  # error kinds seen

    def add(self, other: SimulationResult) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.feedback_sent += other.feedback_sent
        self.feedback_failed += other.feedback_failed
        self.versions.update(other.versions)
        self.errors.update(other.errors)


def batches(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


def _error(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


def _send_batch(
    client: httpx.Client, spec: ServiceSpec, base: str, batch: pd.DataFrame, feedback: bool
) -> SimulationResult:
    result = SimulationResult()
    records = frame_to_records(spec, batch[spec.feature_names])
    try:
        response = client.post(f"{base}/predict", json={RECORDS: records})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        predictions = body[PREDICTIONS]
        if len(predictions) != len(records):
            raise ValueError(f"{len(predictions)} predictions for {len(records)} records")
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        result.failed += len(batch)
        result.errors[_error(exc)] += 1
        return result
    result.sent += len(batch)
    result.versions[str(body.get(MODEL_VERSION))] += len(batch)
    if feedback:
        for prediction, label in zip(predictions, batch[spec.target].tolist(), strict=True):
            _send_feedback(client, base, prediction[REQUEST_ID], label, result)
    return result


def _send_feedback(
    client: httpx.Client, base: str, request_id: str, label: Any, result: SimulationResult
) -> None:
    value = label.item() if hasattr(label, "item") else label
    try:
        response = client.post(f"{base}/feedback", json={REQUEST_ID: request_id, LABEL: value})
        response.raise_for_status()
        result.feedback_sent += 1
    except httpx.HTTPError as exc:
        result.feedback_failed += 1
        result.errors[f"feedback {_error(exc)}"] += 1


def simulate(
    spec: ServiceSpec,
    serve_url: str,
    config: SimulationConfig,
    progress: Progress | None = None,
    transport: httpx.BaseTransport | None = None,
    rows: pd.DataFrame | None = None,
) -> SimulationResult:
    """Send `rows` (default: `config.rows` traffic rows); failed requests are counted, never
    raised (rows that cannot be made raise TrafficError before anything is sent)."""
    frame = traffic_rows(spec, config.rows, config.seed, config.drift) if rows is None else rows
    base = f"{serve_url.rstrip('/')}/{spec.name}"
    total = SimulationResult()
    with httpx.Client(timeout=config.timeout_s, transport=transport) as client:

        def work(batch: pd.DataFrame) -> SimulationResult:
            return _send_batch(client, spec, base, batch, config.feedback)

        with ThreadPoolExecutor(max_workers=max(1, config.concurrency)) as pool:
            for part in pool.map(work, batches(frame, config.batch_size)):
                total.add(part)
                if progress:
                    progress(part.sent + part.failed)
    log.info(
        "%s: sent %d, failed %d, feedback %d (failed %d)",
        spec.name,
        total.sent,
        total.failed,
        total.feedback_sent,
        total.feedback_failed,
    )
    return total
