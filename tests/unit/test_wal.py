"""The inference log's write-ahead files: frame format, segments, recovery exactly once, and
a crash at each step of committing a part."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pytest

from services.inference_log import (
    PREDICTIONS_KIND,
    REQUEST_ID,
    TIMESTAMP,
    commit_part,
    kind_root,
    read_log,
)
from services.settings import PACKAGE_REPO
from services.wal import (
    HEADER,
    LOCK_FILE,
    META_FILE,
    TABLE_FRAME,
    SegmentFiles,
    part_name,
    read_segment,
    recover,
    rows_frame,
    segment_name,
    table_frame,
)

pytestmark = pytest.mark.unit
SERVICE = "svc"
STAMP = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def rows(n: int, start: int = 0) -> list[dict]:
    return [
        {REQUEST_ID: f"r{i}", TIMESTAMP: STAMP + timedelta(seconds=i), "x": i * 0.5, "k": "a"}
        for i in range(start, start + n)
    ]


def dead_writer(root: Path, uri: str, name: str, batches: list[list[dict]]) -> Path:
    """A writer's files as a killed process leaves them: one segment per batch, unlocked."""
    files = SegmentFiles(root, uri, SERVICE, PREDICTIONS_KIND, name)
    for batch in batches:
        files.append(rows_frame(batch), sync=False)
        files.seal()
    files.close(committed=False)
    return files.folder


def logged(uri: str) -> list[str]:
    return sorted(read_log(uri, SERVICE, PREDICTIONS_KIND, columns=[REQUEST_ID])[REQUEST_ID])


def parts(uri: str) -> list[str]:
    fs, root = fsspec.core.url_to_fs(kind_root(uri, SERVICE, PREDICTIONS_KIND))
    return sorted(p.rsplit("/", 1)[-1] for p in fs.glob(f"{root}/date=*/*"))


def test_frames_round_trip_rows_and_tables(tmp_path):
    table = pa.Table.from_pylist(rows(3, start=10))
    segment = tmp_path / "s.wal"
    segment.write_bytes(rows_frame(rows(2)) + table_frame(table))
    first, second = read_segment(segment)
    assert first.column(REQUEST_ID).to_pylist() == ["r0", "r1"]
    assert first.column(TIMESTAMP).to_pylist() == [r[TIMESTAMP] for r in rows(2)]
    assert (
        first.schema.field(TIMESTAMP).type
        == pa.Table.from_pylist(rows(1)).schema.field(TIMESTAMP).type
    )  # the same type as rows converted directly
    assert second.equals(table)


def test_a_table_frame_is_compressed_and_segments_written_uncompressed_still_read(tmp_path):
    table = pa.Table.from_pylist(rows(5_000))  # repeated strings, as a /batch request's rows
    plain = pa.BufferOutputStream()
    with pa.ipc.new_stream(plain, table.schema) as stream:  # a table frame before compression
        stream.write_table(table)
    payload = plain.getvalue().to_pybytes()
    older = HEADER.pack(TABLE_FRAME, len(payload), zlib.crc32(payload)) + payload
    assert len(table_frame(table)) < 0.8 * len(older)
    segment = tmp_path / "s.wal"
    segment.write_bytes(older + table_frame(table))
    assert [t.equals(table) for t in read_segment(segment)] == [True, True]


@pytest.mark.parametrize("cut", [1, HEADER.size - 1, HEADER.size + 5])
def test_a_torn_last_frame_is_left_out(tmp_path, cut):
    whole = rows_frame(rows(2))
    segment = tmp_path / "s.wal"
    segment.write_bytes(whole + rows_frame(rows(2, start=2))[:cut])
    tables = read_segment(segment)
    assert [t.num_rows for t in tables] == [2]


def test_a_frame_that_fails_its_checksum_ends_the_segment(tmp_path):
    first, second = rows_frame(rows(1)), bytearray(rows_frame(rows(1, start=1)))
    second[-2] ^= 0xFF
    segment = tmp_path / "s.wal"
    segment.write_bytes(first + bytes(second) + rows_frame(rows(1, start=2)))
    assert [t.column(REQUEST_ID).to_pylist() for t in read_segment(segment)] == [["r0"]]
    assert zlib.crc32(bytes(second[HEADER.size :])) != HEADER.unpack_from(second)[2]


def test_recover_commits_a_dead_writers_segments_once_and_removes_its_files(tmp_path):
    root, uri = tmp_path / "wal", str(tmp_path / "log")
    folder = dead_writer(root, uri, "predict-a", [rows(3), rows(2, start=3)])
    done = recover(root)
    assert (done.writers, done.segments, done.rows) == (1, 2, 5)
    assert logged(uri) == sorted(f"r{i}" for i in range(5))
    assert parts(uri) == [f"{part_name('predict-a', s)}.parquet" for s in (0, 1)]
    assert not folder.exists()
    assert recover(root).rows == 0 and logged(uri) == sorted(f"r{i}" for i in range(5))


def test_recover_leaves_a_live_writer_alone(tmp_path):
    root, uri = tmp_path / "wal", str(tmp_path / "log")
    live = SegmentFiles(root, uri, SERVICE, PREDICTIONS_KIND, "predict-live")
    live.append(rows_frame(rows(2)), sync=True)
    assert recover(root).writers == 0
    assert (live.folder / segment_name(0)).exists() and logged(uri) == []
    live.close(committed=False)  # it dies: now it is recovered
    assert recover(root).rows == 2


def test_a_crash_after_the_part_and_before_the_segments_deletion_writes_no_duplicate(tmp_path):
    root, uri = tmp_path / "wal", str(tmp_path / "log")
    folder = dead_writer(root, uri, "predict-a", [rows(3)])
    table = pa.concat_tables(read_segment(folder / segment_name(0)))
    commit_part(uri, SERVICE, PREDICTIONS_KIND, table, part_name("predict-a", 0))  # then killed
    assert recover(root).segments == 1
    assert logged(uri) == ["r0", "r1", "r2"] and len(parts(uri)) == 1


@pytest.mark.parametrize("left", [[META_FILE, LOCK_FILE], [LOCK_FILE], []])
def test_a_removal_cut_short_at_any_step_is_finished_by_the_next_recovery(tmp_path, left):
    root, uri = tmp_path / "wal", str(tmp_path / "log")
    folder = dead_writer(root, uri, "predict-a", [rows(3)])
    meta = (folder / META_FILE).read_text()
    assert recover(root).rows == 3
    folder.mkdir()  # as a removal killed part-way leaves it: `left` is not deleted yet
    for name in left:
        (folder / name).write_text(meta)
    assert recover(root).rows == 0
    assert not any(root.glob("*/*/*")) and logged(uri) == ["r0", "r1", "r2"]


def test_a_writer_closes_cleanly_when_a_recovery_removes_its_folder_once_the_lock_is_gone(
    tmp_path, monkeypatch
):
    root, uri = tmp_path / "wal", str(tmp_path / "log")
    live = SegmentFiles(root, uri, SERVICE, PREDICTIONS_KIND, "predict-live")
    unlink = Path.unlink

    def and_recover(path: Path, *args: object, **kwargs: object) -> None:
        unlink(path, *args, **kwargs)
        if path.name == LOCK_FILE:
            recover(root)  # a replica starting on the node meanwhile

    monkeypatch.setattr(Path, "unlink", and_recover)
    live.close(committed=True)
    assert not any(root.glob("*/*/*"))


def test_a_crash_while_the_part_is_written_leaves_nothing_readable_and_a_rerun_commits_it(
    tmp_path, monkeypatch
):
    root, uri = tmp_path / "wal", str(tmp_path / "log")
    dead_writer(root, uri, "predict-a", [rows(3)])
    fs_class = type(fsspec.filesystem("file"))

    def killed(self, *args, **kwargs):
        raise OSError("killed before the rename")

    with monkeypatch.context() as patch:
        patch.setattr(fs_class, "mv", killed)
        with pytest.raises(OSError, match="killed"):
            recover(root)
    assert logged(uri) == [] and parts(uri) == [f"{part_name('predict-a', 0)}.parquet.tmp"]
    assert recover(root).rows == 3
    assert logged(uri) == ["r0", "r1", "r2"]


def test_a_part_spanning_midnight_lands_on_its_earliest_day_whatever_the_row_order(tmp_path):
    uri = str(tmp_path / "log")
    before = STAMP.replace(hour=23, minute=59)
    table = pd.DataFrame({REQUEST_ID: ["a", "b"], TIMESTAMP: [before + timedelta(hours=1), before]})
    first = commit_part(uri, SERVICE, PREDICTIONS_KIND, table, "w-1")
    again = commit_part(uri, SERVICE, PREDICTIONS_KIND, table.iloc[::-1], "w-1")
    assert first == again and "/date=2026-12-05/" in first
    assert len(parts(uri)) == 1


RECOVER = "import sys, pathlib, services.wal as w; w.recover(pathlib.Path(sys.argv[1]))"


def run_recovery(root: Path, uri: str, kill_at_parts: int | None) -> bool:
    """Run `recover` in a process of its own; SIGKILL it once `kill_at_parts` parts are
    committed. Whether it ran to the end."""
    process = subprocess.Popen([sys.executable, "-c", RECOVER, str(root)], cwd=PACKAGE_REPO)
    while process.poll() is None:
        if kill_at_parts is not None and len(parts(uri)) >= kill_at_parts:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return False
        time.sleep(0.002)
    return process.returncode == 0


def test_recovery_killed_part_way_and_rerun_commits_every_row_exactly_once(tmp_path):
    root, uri = tmp_path / "wal", str(tmp_path / "log")
    segments = 0
    for writer in range(8):
        batches = [rows(3, start=3 * (segments + i)) for i in range(40)]
        dead_writer(root, uri, f"predict-{writer}", batches)
        segments += len(batches)
    kills = 0
    for share in (0.1, 0.35, 0.6, 0.85, None):  # killed four times, then left to finish
        target = None if share is None else int(share * segments)
        finished = run_recovery(root, uri, target)
        kills += not finished
        if finished:
            break
    ids = read_log(uri, SERVICE, PREDICTIONS_KIND)[REQUEST_ID].tolist()
    assert kills >= 3 and finished  # it was interrupted part-way, then finished
    assert sorted(ids) == sorted(f"r{i}" for i in range(3 * segments))  # each exactly once
    assert not any(root.glob("*/*/*"))


def test_mlops_log_recover_commits_what_dead_writers_left_and_says_so(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mlops.cli import app

    uri = str(tmp_path / "log")
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    dead_writer(tmp_path / "wal", uri, "predict-a", [rows(2), rows(1, start=2)])
    result = CliRunner().invoke(app, ["log", "recover"])
    assert result.exit_code == 0, result.output
    assert "3 rows in 2 segments of 1 stopped writers" in " ".join(result.output.split())
    assert logged(uri) == ["r0", "r1", "r2"]


def test_mlops_log_recover_says_what_failed_without_a_traceback(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mlops.cli import app

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    dead_writer(tmp_path / "wal", str(tmp_path / "log"), "predict-a", [rows(2)])
    (tmp_path / "log").write_text("a file where the log's folder should be")
    result = CliRunner().invoke(app, ["log", "recover"])
    assert result.exit_code == 1
    assert "nothing is lost" in result.output and "Traceback" not in result.output
    assert any((tmp_path / "wal").glob("*/*/*/*.wal"))  # kept for the next try


def test_a_failed_append_is_cut_off_so_later_frames_stay_readable(tmp_path, monkeypatch):
    root, uri = tmp_path / "wal", str(tmp_path / "log")
    files = SegmentFiles(root, uri, SERVICE, PREDICTIONS_KIND, "predict-a")
    files.append(rows_frame(rows(1)), sync=False)
    real_write, calls = os.write, []

    def disk_full_half_way(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            real_write(fd, bytes(data[:10]))  # part of the frame reached the file
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", disk_full_half_way)
    with pytest.raises(OSError, match="No space"):
        files.append(rows_frame(rows(1, start=1)), sync=False)
    files.append(rows_frame(rows(1, start=2)), sync=False)  # acknowledged after the failure
    monkeypatch.undo()
    files.close(committed=False)
    assert recover(root).rows == 2 and logged(uri) == ["r0", "r2"]
