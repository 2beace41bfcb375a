"""Inference-log writer: rows reach a write-ahead file before their answer leaves; a thread
writes them as Parquet parts.

An append hands the rows to the writer's write-ahead segment (services/wal.py: one `os.write`,
plus an fsync with durability `fsync`) and keeps them in memory. A flush, when the buffer
reaches `max_rows`, every `interval_s` and on `close()` (the replica's graceful shutdown),
seals the segment, writes the buffered rows as the part named after it and deletes it. Rows of
a replica that was killed are committed from its segments by the next replica that starts on the
node (`recover_in_background`), or by `mlops log recover`.
A flush goes straight from the buffered dicts to Arrow (no pandas frame), `CONVERT_STEP_ROWS`
rows at a time: the conversion holds the GIL, and a request waits for one step, not for the
whole buffer (benchmarks/REQUEST_STALLS.md measures both).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from services.inference_log import Kind, commit_part, concat_parts, rows_table, to_arrow
from services.settings import get_settings
from services.wal import SegmentFiles, part_name, recover, rows_frame, table_frame

log = logging.getLogger(__name__)
#: Buffered rows converted to Arrow per hold of the GIL; the GIL is released between steps.
CONVERT_STEP_ROWS = 1_000


class InferenceLogWriter:
    """Thread-safe buffer of rows (dicts) and tables for one service and kind; with `wal_dir`,
    every append is in a write-ahead file of the node before it returns (`sync`: on disk)."""

    def __init__(
        self,
        uri: str,
        service: str,
        kind: Kind,
        writer_id: str,
        *,
        wal_dir: Path | None = None,
        sync: bool = False,
        max_rows: int = 20_000,
        interval_s: float = 2.0,
    ) -> None:
        self.uri, self.service, self.kind = uri, service, kind
        self.max_rows, self.interval_s, self.sync = max_rows, interval_s, sync
        self.name = f"{writer_id}-{uuid.uuid4().hex[:8]}"  # its parts and segments are named so
        self._files = (
            None if wal_dir is None else SegmentFiles(wal_dir, uri, service, kind, self.name)
        )
        self._rows: list[dict[str, Any]] = []
        self._tables: list[pa.Table] = []
        self._pending = 0
        self._next_part = 0  # without files: the number of the next part
        self._sealed: list[tuple[int, pa.Table]] = []  # parts not committed yet, in order
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self.written = 0
        self._thread = threading.Thread(target=self._run, name=f"log-{kind}", daemon=True)
        self._thread.start()

    def append_rows(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            frame = b"" if self._files is None else rows_frame(rows)
            self._append(lambda: self._rows.extend(rows), len(rows), frame)

    def append_frame(self, frame: pd.DataFrame | pa.Table) -> None:
        table = to_arrow(frame)
        if len(table):
            encoded = b"" if self._files is None else table_frame(table)
            self._append(lambda: self._tables.append(table), len(table), encoded)

    def _append(self, add: Callable[[], None], count: int, frame: bytes) -> None:
        """Write `frame` to the open segment and `add` its rows to the buffer, both under the
        lock: `add` finds the buffer only then, so its rows go where the frame went."""
        with self._lock:
            if self._files is not None:  # before the buffer: a failed write keeps nothing
                self._files.append(frame, self.sync)
            add()
            self._pending += count
            full = self._pending >= self.max_rows
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write everything buffered so far (and parts a failed write left) as Parquet parts;
        returns the rows written."""
        with self._flush_lock:
            with self._lock:
                rows, tables = self._rows, self._tables
                self._rows, self._tables, self._pending = [], [], 0
                seq = self._seal() if rows or tables else None
            if seq is not None:  # converted outside the lock: appends go on meanwhile
                table = concat_parts([*tables, *rows_tables(rows)])
                self._sealed.append((seq, table))
            return self._commit_sealed()

    def _seal(self) -> int:
        """The number of the part that holds the buffer (its segment's, sealed now)."""
        if self._files is not None:
            sealed = self._files.seal()
            assert sealed is not None  # rows were appended to it
            return sealed
        self._next_part += 1
        return self._next_part - 1

    def _commit_sealed(self) -> int:
        written = 0
        while self._sealed:
            seq, table = self._sealed[0]
            try:
                commit_part(self.uri, self.service, self.kind, table, part_name(self.name, seq))
            except Exception:
                log.exception("inference log write failed; %d rows kept for a retry", len(table))
                break
            self._sealed.pop(0)
            if self._files is not None:
                self._files.drop(seq)
            written += len(table)
        self.written += written
        return written

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.flush()

    def close(self) -> int:
        """Stop the thread and write what is left (graceful shutdown); segments whose part could
        not be written stay on the node for `recover`."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)
        written = self.flush()
        with self._lock:
            if self._files is not None:
                self._files.close(committed=not self._sealed)
                self._files = None
        return written


def rows_tables(rows: list[dict[str, Any]]) -> list[pa.Table]:
    """`rows` as tables of up to `CONVERT_STEP_ROWS` rows, letting other threads run between."""
    tables = []
    for start in range(0, len(rows), CONVERT_STEP_ROWS):
        tables.append(rows_table(rows[start : start + CONVERT_STEP_ROWS]))
        time.sleep(0)  # releases the GIL: the replica's waiting requests go on
    return tables


def log_writer(service: str, kind: Kind, writer_id: str) -> InferenceLogWriter:
    """A writer as the settings configure it: log URI, write-ahead folder, durability."""
    settings = get_settings()
    durable = settings.log_durability != "memory"
    return InferenceLogWriter(
        settings.inference_log_uri,
        service,
        kind,
        writer_id,
        wal_dir=settings.log_wal_dir if durable else None,
        sync=settings.log_durability == "fsync",
    )


def recover_in_background() -> threading.Thread:
    """Commit what dead writers left in this node's write-ahead folder, off the caller's path."""
    thread = threading.Thread(target=_recover, name="log-recovery", daemon=True)
    thread.start()
    return thread


def _recover() -> None:
    try:
        recover(get_settings().log_wal_dir)
    except Exception:  # retried by the next replica's start and by `mlops log recover`
        log.exception("recovering the inference log's write-ahead files failed")
