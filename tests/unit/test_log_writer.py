"""The inference-log writer with its write-ahead files: an append is on the node before it
returns, a killed writer loses nothing, and nothing is written twice."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pandas as pd
import pytest

from services.inference_log import PREDICTIONS_KIND, REQUEST_ID, TIMESTAMP, read_log
from services.settings import LOG_DURABILITY_ENV, PACKAGE_REPO, get_settings
from services.wal import read_segment, recover, segment_name
from serving import log_writer as module
from serving.log_writer import InferenceLogWriter, log_writer

pytestmark = pytest.mark.unit
SERVICE = "svc"


def rows(n: int, start: int = 0) -> list[dict]:
    stamp = datetime.now(UTC)
    return [{REQUEST_ID: f"r{i}", TIMESTAMP: stamp, "x": float(i)} for i in range(start, start + n)]


def logged(uri: str) -> list[str]:
    return read_log(uri, SERVICE, PREDICTIONS_KIND, columns=[REQUEST_ID])[REQUEST_ID].tolist()


def writer(tmp_path, **kwargs) -> InferenceLogWriter:
    return InferenceLogWriter(
        str(tmp_path / "log"), SERVICE, PREDICTIONS_KIND, "predict-x", wal_dir=tmp_path / "wal",
        **{"interval_s": 60.0} | kwargs,
    )  # fmt: skip


def test_an_append_is_in_the_write_ahead_file_when_it_returns(tmp_path):
    log = writer(tmp_path)
    log.append_rows(rows(2))
    log.append_frame(pd.DataFrame(rows(1, start=2)))
    segment = log._files.folder / segment_name(0)
    assert [t.num_rows for t in read_segment(segment)] == [2, 1]
    assert logged(log.uri) == []  # not flushed yet
    log.close()
    assert sorted(logged(log.uri)) == ["r0", "r1", "r2"]
    assert not any((tmp_path / "wal").glob("*/*/*"))  # committed: its files are gone


def test_a_flush_deletes_the_segments_it_committed(tmp_path):
    log = writer(tmp_path)
    log.append_rows(rows(3))
    assert log.flush() == 3
    assert sorted(p.name for p in log._files.folder.glob("*.wal")) == [segment_name(1)]
    log.close()


def test_segments_a_failed_write_left_at_shutdown_are_recovered(tmp_path, monkeypatch):
    log = writer(tmp_path)
    log.append_rows(rows(4))

    def unreachable(*args, **kwargs):
        raise OSError("object store unreachable")

    monkeypatch.setattr(module, "commit_part", unreachable)
    assert log.close() == 0
    monkeypatch.undo()
    assert recover(tmp_path / "wal").rows == 4
    assert sorted(logged(log.uri)) == [f"r{i}" for i in range(4)]


def test_fsync_durability_syncs_every_append(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fdatasync", synced.append)
    log = writer(tmp_path, sync=True)
    log.append_rows(rows(1))
    log.append_rows(rows(1, start=1))
    assert len(synced) == 2
    log.close()


@pytest.mark.parametrize(("level", "files"), [("memory", False), ("os", True), ("fsync", True)])
def test_the_durability_setting_chooses_the_writer(tmp_path, monkeypatch, level, files):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.setenv(LOG_DURABILITY_ENV, level)
    log = log_writer(SERVICE, PREDICTIONS_KIND, "predict-x")
    assert (log._files is not None) == files and log.sync == (level == "fsync")
    assert get_settings().log_wal_dir == tmp_path / "wal"
    log.close()


def test_an_unknown_durability_is_refused_by_name(monkeypatch):
    monkeypatch.setenv(LOG_DURABILITY_ENV, "sometimes")
    with pytest.raises(ValueError, match="MLOPS_LOG_DURABILITY='sometimes': expected one of"):
        get_settings()


WRITER = """
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from serving.log_writer import InferenceLogWriter
log = InferenceLogWriter(sys.argv[1], "svc", "predictions", "predict-k", wal_dir=Path(sys.argv[2]),
                         interval_s=0.02)
for i in range(1_000_000):
    log.append_rows([{"request_id": f"r{i}", "timestamp": datetime.now(UTC), "x": float(i)}])
    print(f"r{i}", flush=True)  # acknowledged
"""


def test_a_writer_killed_while_appending_and_flushing_loses_no_acknowledged_row(tmp_path):
    uri, wal = str(tmp_path / "log"), tmp_path / "wal"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, uri, str(wal)],
        cwd=PACKAGE_REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    acknowledged: list[str] = []

    def read_acknowledgements() -> None:  # all along: the writer never waits for the pipe
        for line in process.stdout:
            acknowledged.append(line.strip())

    reader = threading.Thread(target=read_acknowledgements)
    reader.start()
    while len(acknowledged) < 3_000 or not logged(uri):  # killed after a flush or more
        assert process.poll() is None, "the writer ended before it was killed"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    reader.join()
    before = logged(uri)  # what its flushes had committed
    done = recover(wal)
    ids = logged(uri)
    assert before and done.rows  # killed part-way: both the writer and the recovery wrote
    assert set(acknowledged) <= set(ids)
    assert len(ids) == len(set(ids))  # exactly once


class FlushFirst:
    """The writer's lock, but a flush runs to its end just before the first entry."""

    def __init__(self, log: InferenceLogWriter) -> None:
        self.log, self.lock, self.armed = log, log._lock, True

    def __enter__(self) -> None:
        if self.armed:
            self.armed = False
            flusher = threading.Thread(target=self.log.flush)
            flusher.start()
            flusher.join()
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def test_rows_appended_while_a_flush_takes_the_buffer_are_written_once(tmp_path):
    log = writer(tmp_path)
    log.append_rows(rows(2))
    log._lock = FlushFirst(log)  # the flush takes the buffer while this append waits
    log.append_rows(rows(1, start=2))
    log.append_frame(pd.DataFrame(rows(1, start=3)))
    log.close()
    assert sorted(logged(log.uri)) == ["r0", "r1", "r2", "r3"]


def test_a_flush_converts_the_buffer_in_steps_and_writes_every_row_in_order(tmp_path, monkeypatch):
    converted: list[int] = []
    convert = module.rows_table
    monkeypatch.setattr(
        module, "rows_table", lambda part: converted.append(len(part)) or convert(part)
    )
    log = writer(tmp_path)
    count = 2 * module.CONVERT_STEP_ROWS + 7
    log.append_rows(rows(count))
    assert log.flush() == count
    assert converted == [module.CONVERT_STEP_ROWS, module.CONVERT_STEP_ROWS, 7]
    assert logged(log.uri) == [f"r{i}" for i in range(count)]
    log.close()


def test_the_request_stalls_bench_flushes_a_full_buffer_on_each_side():
    from benchmarks import request_stalls as bench

    buffer = bench.logged_rows(rows(3))
    side = bench.Side("frozen, small steps", step_rows=7, frozen=True)
    figures = bench.one_round(side, lambda: time.sleep(0.001), buffer)
    assert len(buffer) == bench.BUFFER_ROWS and figures["flush"] > 0
    assert module.CONVERT_STEP_ROWS != 7 and gc.get_freeze_count() == 0  # both restored
