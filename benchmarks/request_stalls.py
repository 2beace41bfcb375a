"""`python -m benchmarks.request_stalls`: what holds up a replica's requests besides their own
work: an inference-log flush (its buffer converted to Arrow in one piece, or `CONVERT_STEP_ROWS`
rows at a time) and Python's cyclic collector (walking the whole heap, or only what was
allocated after the start-up heap was frozen with `gc.freeze`, as replicas do).

In one process, as in a replica: a thread validates 500-record fraud-detection bodies with the
service's record model back to back (a request's Python work) for 0.1 s, then while the
writer's flush commits a full buffer (20,000 logged rows, the writer's `max_rows`) to a local
log. A round records the longest validation in each phase; the median validation is about
2 ms. The sides alternate, three rounds each; the table goes to benchmarks/REQUEST_STALLS.md.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from services.datagen import generate
from services.inference_log import (
    ENDPOINT,
    LATENCY_MS,
    MODEL_VERSION,
    PREDICTION,
    PREDICTIONS_KIND,
    REQUEST_ID,
    SERVICE,
    TIMESTAMP,
)
from services.schema import frame_to_records, record_model
from services.spec import load_spec
from serving import log_writer

RESULTS = Path(__file__).resolve().parent / "REQUEST_STALLS.md"
SERVICE_NAME = "fraud-detection"
BODY_ROWS = 500
BUFFER_ROWS = 20_000
ROUNDS = 3


@dataclass(frozen=True)
class Side:
    name: str
    step_rows: int  # buffered rows converted per hold of the GIL
    frozen: bool  # the start-up heap frozen out of the collector


def logged_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A full buffer of logged rows shaped as a replica logs them."""
    meta = {
        TIMESTAMP: datetime.now(UTC),
        SERVICE: SERVICE_NAME,
        MODEL_VERSION: "1",
        ENDPOINT: "predict",
        REQUEST_ID: "0" * 32,
        LATENCY_MS: 1.0,
    }
    rows = [{**record, **meta, PREDICTION: 0.5} for record in records]
    return (rows * (BUFFER_ROWS // len(rows) + 1))[:BUFFER_ROWS]


def longest_while(work: Callable[[], None], during: Callable[[], None]) -> tuple[float, float]:
    """The longest `work` call (ms) while `during` runs in this thread, and `during`'s time."""
    longest, done = [0.0], threading.Event()

    def loop() -> None:
        while not done.is_set():
            start = time.perf_counter()
            work()
            longest[0] = max(longest[0], time.perf_counter() - start)

    thread = threading.Thread(target=loop)
    thread.start()
    time.sleep(0.2)  # the loop is running
    longest[0] = 0.0
    start = time.perf_counter()
    during()
    took = time.perf_counter() - start
    done.set()
    thread.join()
    return longest[0] * 1000, took * 1000


def one_round(
    side: Side, validate: Callable[[], None], rows: list[dict[str, Any]]
) -> dict[str, float]:
    """Longest validation idle and during one flush of `rows`, on `side`."""
    if side.frozen:
        gc.freeze()
    with tempfile.TemporaryDirectory() as folder:
        writer = log_writer.InferenceLogWriter(
            folder,
            SERVICE_NAME,
            PREDICTIONS_KIND,
            "bench",
            max_rows=BUFFER_ROWS + 1,
            interval_s=3600,
        )
        writer.append_rows(rows)
        idle, _ = longest_while(validate, lambda: time.sleep(0.1))
        saved, log_writer.CONVERT_STEP_ROWS = log_writer.CONVERT_STEP_ROWS, side.step_rows
        try:
            during, flush = longest_while(validate, writer.flush)
        finally:
            log_writer.CONVERT_STEP_ROWS = saved
            writer.close()
            gc.unfreeze()
    return {"idle": idle, "during": during, "flush": flush}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    spec = load_spec(SERVICE_NAME)
    records = frame_to_records(spec, generate(spec, BODY_ROWS, seed=9)[spec.feature_names])
    adapter = TypeAdapter(list[record_model(spec)])  # type: ignore[misc]
    rows = logged_rows(records)
    step = log_writer.CONVERT_STEP_ROWS
    sides = [
        Side("flush in one piece, whole heap collected", BUFFER_ROWS, frozen=False),
        Side(f"flush in steps of {step:,}, whole heap collected", step, frozen=False),
        Side("flush in one piece, start-up heap frozen", BUFFER_ROWS, frozen=True),
        Side(f"flush in steps of {step:,}, start-up heap frozen (replicas)", step, frozen=True),
    ]
    results: dict[Side, list[dict[str, float]]] = {side: [] for side in sides}
    for _ in range(ROUNDS):
        for side in sides:
            results[side].append(one_round(side, lambda: adapter.validate_python(records), rows))
    lines = [
        "# What holds up a replica's requests: the log's flush and the collector",
        "",
        (__doc__ or "").strip(),
        "",
        f"Milliseconds, median (min-max) of {ROUNDS} rounds.",
        "",
        "| replica | longest validation, idle | longest validation, during the flush | flush |",
        "| --- | --- | --- | --- |",
    ]
    for side, runs in results.items():
        cells = [spread([run[key] for run in runs]) for key in ("idle", "during", "flush")]
        lines.append(f"| {side.name} | " + " | ".join(cells) + " |")
    RESULTS.write_text("\n".join(lines) + "\n")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
