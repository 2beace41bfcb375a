"""Write-ahead files of the inference log: rows are on their node before their answer leaves.

A log writer (serving/log_writer.py) appends every batch of rows to a segment file of its own
with one `os.write` before the request is answered, so a killed process loses nothing (the
operating system holds the bytes); with durability `fsync` each append also waits for the disk.
The writer's flush seals the segment, commits the rows it holds in memory as the Parquet part
named after the segment, and deletes the segment. The files of a writer that died are committed
by `recover` (every replica runs it when it starts; so does `mlops log recover`, and the monitor
before it reads the log): the part is named after the segment and `commit_part` skips a part
already there, so a segment is committed exactly once, whoever commits it and however often.

Layout, under the node-local folder (`MLOPS_LOG_WAL_DIR`):
    <service>/<kind>/<writer>/writer.json   the log URI its rows belong to
    <service>/<kind>/<writer>/lock          locked (flock) by the live writer: free once it died
    <service>/<kind>/<writer>/<seq>.wal     segments of frames, sealed in order

A frame is a header (payload type, length, CRC-32) and its payload: rows as JSON, or a table as
an Arrow IPC stream (LZ4-compressed). A crash part-way through an append leaves a frame that
fails its length or checksum; it was never acknowledged (the append had not returned), and
reading stops there.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import orjson
import pyarrow as pa

from services.inference_log import TIMESTAMP, Kind, commit_part, concat_parts, rows_table

log = logging.getLogger(__name__)

ROWS_FRAME = 1  # payload: a JSON array of row objects
TABLE_FRAME = 2  # payload: an Arrow IPC stream
#: A table frame's buffers are LZ4-compressed: a third of the bytes to copy and write, in less
#: time than the copies it saves (a /batch request's rows; readers decompress transparently).
TABLE_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
HEADER = struct.Struct("<BII")  # payload type, payload length, CRC-32 of the payload
SEGMENT_SUFFIX = ".wal"
META_FILE = "writer.json"
LOCK_FILE = "lock"


def rows_frame(rows: list[dict[str, Any]]) -> bytes:
    return _frame(ROWS_FRAME, orjson.dumps(rows, option=orjson.OPT_SERIALIZE_NUMPY))


def table_frame(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=TABLE_OPTIONS) as stream:
        stream.write_table(table)
    return _frame(TABLE_FRAME, sink.getvalue().to_pybytes())


def _frame(kind: int, payload: bytes) -> bytes:
    return HEADER.pack(kind, len(payload), zlib.crc32(payload)) + payload


def read_segment(path: Path) -> list[pa.Table]:
    """The tables of a segment's complete frames, in order (a torn last frame is left out)."""
    data, offset, tables = path.read_bytes(), 0, []
    while offset + HEADER.size <= len(data):
        kind, length, crc = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        payload = data[start : start + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            log.warning("%s: a torn frame at byte %d ends the segment", path, offset)
            break
        tables.append(_decode(kind, payload))
        offset = start + length
    return tables


def _decode(kind: int, payload: bytes) -> pa.Table:
    if kind == TABLE_FRAME:
        return pa.ipc.open_stream(payload).read_all()
    rows = orjson.loads(payload)
    for row in rows:  # JSON holds the timestamp as ISO 8601 text
        row[TIMESTAMP] = datetime.fromisoformat(row[TIMESTAMP])
    return rows_table(rows)


def segment_name(seq: int) -> str:
    return f"{seq:08d}{SEGMENT_SUFFIX}"


def part_name(writer: str, seq: int) -> str:
    """The inference-log part that holds segment `seq` of `writer` (the name makes it once)."""
    return f"{writer}-{seq:08d}"


class SegmentFiles:
    """The write-ahead segments of one live writer, which holds their folder's lock."""

    def __init__(self, root: Path, uri: str, service: str, kind: Kind, writer: str) -> None:
        self.folder = root / service / kind / writer
        staging = self.folder.with_name(f".{writer}")  # recovery skips it until it is locked
        staging.mkdir(parents=True)
        self._lock = os.open(staging / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        (staging / META_FILE).write_text(json.dumps({"uri": uri}))
        staging.rename(self.folder)
        self.seq, self._size = 0, 0
        self._fd = self._open(self.seq)

    def _open(self, seq: int) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        return os.open(self.folder / segment_name(seq), flags, 0o600)

    def append(self, frame: bytes, sync: bool) -> None:
        """Hand `frame` to the operating system (and wait for the disk when `sync`). A failed
        append (a full disk) is cut off again, so the frames after it stay readable."""
        view = memoryview(frame)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
            if sync:
                os.fdatasync(self._fd)
        except OSError:
            os.ftruncate(self._fd, self._size)
            raise
        self._size += len(frame)

    def seal(self) -> int | None:
        """Close the open segment and start the next; the sealed one's number (None if empty)."""
        if not self._size:
            return None
        os.close(self._fd)
        sealed, self.seq, self._size = self.seq, self.seq + 1, 0
        self._fd = self._open(self.seq)
        return sealed

    def drop(self, seq: int) -> None:
        """Delete a segment whose part is committed."""
        (self.folder / segment_name(seq)).unlink(missing_ok=True)

    def close(self, committed: bool) -> None:
        """Release the files; remove them when everything is `committed`, else leave them for
        `recover` (the log URI was unreachable at shutdown)."""
        os.close(self._fd)
        if committed:
            _remove(self.folder)
        os.close(self._lock)


@dataclass
class Recovery:
    """What `recover` committed: writers found dead, segments and rows, the parts written."""

    writers: int = 0
    segments: int = 0
    rows: int = 0
    parts: list[str] = field(default_factory=list)


def recover(root: Path) -> Recovery:
    """Commit the segments of every dead writer under `root`, then remove its files."""
    done = Recovery()
    for folder in sorted(root.glob("*/*/*")):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        if not (folder / LOCK_FILE).exists():  # a removal cut short after the lock went
            with contextlib.suppress(FileNotFoundError):  # or another recovery's removal
                folder.rmdir()
            continue
        with _locked(folder) as owned:
            if owned and folder.exists():
                _recover_writer(folder, done)
    if done.segments:
        log.info("recovered %d rows of %d dead log writers", done.rows, done.writers)
    return done


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[bool]:
    """Whether this process now holds the folder's lock (False: its writer is alive, or
    another recovery has it)."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR)
    except FileNotFoundError:  # removed by another recovery meanwhile
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        yield False
        return
    try:
        yield True
    finally:
        os.close(fd)


def _recover_writer(folder: Path, done: Recovery) -> None:
    meta = folder / META_FILE
    if meta.exists():  # else a removal was cut short after its segments went: only remove
        uri = json.loads(meta.read_text())["uri"]
        service, kind = folder.parent.parent.name, cast(Kind, folder.parent.name)
        for segment in sorted(folder.glob(f"*{SEGMENT_SUFFIX}")):
            tables = read_segment(segment)
            if tables:
                table = concat_parts(tables)
                name = part_name(folder.name, int(segment.stem))
                done.parts.append(commit_part(uri, service, kind, table, name))
                done.rows += len(table)
                done.segments += 1
            segment.unlink()
        done.writers += 1
    _remove(folder)


def _remove(folder: Path) -> None:
    """Remove a writer's folder in an order `recover` can finish from wherever a crash cuts it
    short: the segments, then the log's URI, then the lock (held by the caller), the folder."""
    for segment in folder.glob(f"*{SEGMENT_SUFFIX}"):
        segment.unlink()
    (folder / META_FILE).unlink(missing_ok=True)
    (folder / LOCK_FILE).unlink()
    with contextlib.suppress(FileNotFoundError):  # a recovery found it without its lock
        folder.rmdir()
