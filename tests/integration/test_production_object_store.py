"""Writes to the production profile's S3 store (SeaweedFS) are all or nothing: a writer killed
with SIGKILL part-way leaves nothing a reader would take for complete.

- Inference log (services/inference_log.py): a part is uploaded under a temporary name and
  renamed (a server-side copy); readers list `*.parquet`. Writers are real processes killed
  at delays spread over the whole write, with one PUT per part and with multipart uploads.
- DVC's S3 remote: `dvc push` killed part-way; every object there is checked against the
  MD5 it is named after, then a second push completes and `dvc pull` restores the data.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import fsspec
import numpy as np
import pandas as pd
import pytest

from mlops.production.layout import DVC_BUCKET, INFERENCE_LOG_BUCKET
from services.inference_log import PREDICTIONS_KIND, TIMESTAMP, commit_part, read_log
from services.settings import tool
from tests.figures import record_figure
from tests.production import ProductionStack

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
ROWS = 250_000  # a part of ~11 MB
TRIALS = 8  # killed writers
MULTIPART_BLOCK = 5 * 2**20  # s3fs uploads a part in 5 MiB pieces (its default: one PUT)
WRITER = (
    "import sys\n"
    "import fsspec\n"
    "from services.inference_log import PREDICTIONS_KIND, commit_part\n"
    "from tests.integration.test_production_object_store import part_rows\n"
    "uri, service, trial, block = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])\n"
    "if block:\n"
    "    fsspec.config.conf['s3'] = {'default_block_size': block}\n"
    "rows = part_rows(trial)\n"
    "print('ready', flush=True); sys.stdin.readline()\n"
    "commit_part(uri, service, PREDICTIONS_KIND, rows, f'part-{trial}')\n"
    "print('done', flush=True)\n"
)


def part_rows(trial: int) -> pd.DataFrame:
    """The rows of one trial's part (the same for every call with that trial)."""
    random = np.random.default_rng(trial)
    frame = pd.DataFrame(random.random((ROWS, 5)), columns=[f"f{i}" for i in range(5)])
    frame[TIMESTAMP] = pd.Timestamp("2026-01-01", tz="UTC")
    frame["trial"] = trial
    return frame


@pytest.fixture(scope="module")
def s3_env(production: ProductionStack) -> Iterator[dict[str, str]]:
    """The client environment (credentials, endpoint) in this process too."""
    with production.as_client() as env:
        yield env


def s3_client() -> Any:
    return boto3.client("s3", region_name="us-east-1")


def start_writer(uri: str, service: str, trial: int, block: int) -> subprocess.Popen[str]:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, uri, service, str(trial), str(block)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    return writer


def release(writer: subprocess.Popen[str]) -> float:
    assert writer.stdin is not None
    writer.stdin.write("go\n")
    writer.stdin.flush()
    return time.monotonic()


def objects(bucket: str, prefix: str) -> dict[str, int]:
    """Key -> size of every object under `prefix`."""
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def pending_uploads(bucket: str, prefix: str) -> int:
    """Multipart uploads begun and never completed (invisible to listings and reads)."""
    answer = s3_client().list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return len(answer.get("Uploads", []))


def test_a_killed_inference_log_writer_leaves_no_part_the_reader_takes(s3_env):
    item = "Production profile: inference-log writers killed (SIGKILL) on S3"
    service = f"kill-{uuid.uuid4().hex[:6]}"
    uri = f"s3://{INFERENCE_LOG_BUCKET}/tests"
    whole = start_writer(uri, service, 0, 0)
    started = release(whole)
    assert whole.stdout is not None and whole.stdout.readline().strip() == "done"
    write_s = time.monotonic() - started
    whole.wait(30)
    states: dict[str, int] = {}
    for trial in range(1, TRIALS + 1):
        block = MULTIPART_BLOCK if trial % 2 else 0
        writer = start_writer(uri, service, trial, block)
        release(writer)
        time.sleep(write_s * 1.1 * trial / TRIALS)  # spread over the whole write
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
        stored = objects(INFERENCE_LOG_BUCKET, f"tests/{service}")
        names = [key.rsplit("/", 1)[-1] for key in stored]
        state = (
            "renamed (part complete)"
            if f"part-{trial}.parquet" in names
            else "temporary object only"
            if f"part-{trial}.parquet.tmp" in names
            else "nothing stored yet"
        )
        states[state] = states.get(state, 0) + 1
    logged = read_log(uri, service, PREDICTIONS_KIND)
    counts = logged.groupby("trial").size().to_dict()
    partial = {trial: n for trial, n in counts.items() if n != ROWS}
    pending = pending_uploads(INFERENCE_LOG_BUCKET, f"tests/{service}")
    for trial in range(TRIALS + 1):  # a retry under the same name commits each part once
        commit_part(uri, service, PREDICTIONS_KIND, part_rows(trial), f"part-{trial}")
    after_retry = read_log(uri, service, PREDICTIONS_KIND).groupby("trial").size().to_dict()
    record_figure(item, "part size (MB) / write time (s)", f"{size_mb(uri, service):.1f} / "
                  f"{write_s:.2f}", "-", True)  # fmt: skip
    for state, count in sorted(states.items()):
        record_figure(item, f"killed writers: {state}", count, "-", True)
    record_figure(item, "parts read whole / partly", f"{len(counts)} / {len(partial)}",
                  "any / 0", not partial)  # fmt: skip
    record_figure(item, "multipart uploads left pending (invisible)", pending, "-", True)
    complete = after_retry == dict.fromkeys(range(TRIALS + 1), ROWS)
    record_figure(item, "parts after a retry of each (rows each)", len(after_retry),
                  f"{TRIALS + 1} x {ROWS:,}", complete)  # fmt: skip
    assert not partial, partial
    assert complete, after_retry


def size_mb(uri: str, service: str) -> float:
    fs, root = fsspec.core.url_to_fs(uri)
    (first,) = fs.glob(f"{root}/{service}/{PREDICTIONS_KIND}/date=*/part-0.parquet")
    return fs.size(first) / 2**20


def test_a_writer_failing_part_way_commits_nothing_and_a_direct_write_would(s3_env, monkeypatch):
    """fsspec uploads what was buffered when the `with open` block raises (DESIGN.md): under
    the temporary name that is no part; written straight to `*.parquet` it would be one."""
    import pyarrow.parquet as pq

    item = "Production profile: inference-log writer failing part-way on S3"
    service = f"fail-{uuid.uuid4().hex[:6]}"
    uri = f"s3://{INFERENCE_LOG_BUCKET}/tests"
    real_write = pq.write_table

    def write_half_then_fail(table: Any, where: Any, **kwargs: Any) -> None:
        where.write(b"PAR1" + b"\0" * 1_000_000)  # bytes of a part that never ends
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", write_half_then_fail)
    with pytest.raises(OSError):
        commit_part(uri, service, PREDICTIONS_KIND, part_rows(1)[:1000], "part-1")
    fs, root = fsspec.core.url_to_fs(f"{uri}/{service}/{PREDICTIONS_KIND}/date=2026-01-01")
    leftovers = [p.rsplit("/", 1)[-1] for p in fs.ls(root)]
    taken = read_log(uri, service, PREDICTIONS_KIND)
    direct = f"{root}/direct.parquet"
    with pytest.raises(OSError), fs.open(direct, "wb") as handle:
        write_half_then_fail(None, handle)
    truncated = fs.exists(direct)
    monkeypatch.setattr(pq, "write_table", real_write)
    record_figure(item, "objects left", ", ".join(leftovers), "a .tmp only", True)
    record_figure(item, "rows the reader takes", len(taken), "0", taken.empty)
    record_figure(item, "a direct write's truncated *.parquet stored", truncated, "yes", truncated)
    assert leftovers == ["part-1.parquet.tmp"] and taken.empty
    assert truncated  # why commit_part writes a temporary object first


# --- DVC ------------------------------------------------------------------------------------

FILES, FILE_BYTES = 24, 2_000_000


def dvc(repo: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [tool("dvc"), *args]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory: pytest.TempPathFactory, s3_env: dict[str, str]) -> Path:
    """A DVC project with FILES random files tracked as one folder, remote on the S3 store."""
    repo = tmp_path_factory.mktemp("dvc-s3")
    data = repo / "data"
    data.mkdir()
    random = np.random.default_rng(7)
    for i in range(FILES):
        (data / f"f{i:02d}.bin").write_bytes(random.bytes(FILE_BYTES))
    prefix = f"tests/{uuid.uuid4().hex[:8]}"
    for args in (
        ("init", "--no-scm", "-q"),
        ("add", "-q", "data"),
        ("remote", "add", "-d", "s3", f"s3://{DVC_BUCKET}/{prefix}"),  # endpoint: AWS_ENDPOINT_URL
    ):
        done = dvc(repo, *args, env=s3_env)
        assert done.returncode == 0, done.stderr
    return repo


def md5_named(key: str) -> str:
    """DVC 3 stores a file's content at files/md5/<2 hex>/<30 hex>."""
    return "".join(key.split("/files/md5/")[1].split("/")).removesuffix(".dir")


def test_a_killed_dvc_push_leaves_no_truncated_object_and_a_rerun_completes(dvc_repo, s3_env):
    item = f"Production profile: `dvc push` of {FILES} files killed (SIGKILL) on S3"
    remote = dvc(dvc_repo, "remote", "list", env=s3_env).stdout.split()[1]
    prefix = remote.removeprefix(f"s3://{DVC_BUCKET}/")
    push = subprocess.Popen(
        [tool("dvc"), "push", "-j", "4"],
        cwd=dvc_repo,
        env=s3_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(objects(DVC_BUCKET, prefix)) < FILES // 3 and push.poll() is None:
        assert time.monotonic() < deadline, "dvc push stored nothing"
        time.sleep(0.05)
    os.killpg(push.pid, signal.SIGKILL)
    push.wait(30)
    stored = objects(DVC_BUCKET, prefix)
    client = s3_client()
    bad = [
        key
        for key in stored
        if hashlib.md5(client.get_object(Bucket=DVC_BUCKET, Key=key)["Body"].read()).hexdigest()
        != md5_named(key)
    ]
    manifest_early = any(key.endswith(".dir") for key in stored)
    missing = json.loads(dvc(dvc_repo, "status", "-c", "--json", env=s3_env).stdout or "{}")
    rerun = dvc(dvc_repo, "push", env=s3_env)
    in_sync = json.loads(dvc(dvc_repo, "status", "-c", "--json", env=s3_env).stdout or "{}")
    original = {p.name: p.read_bytes() for p in (dvc_repo / "data").iterdir()}
    shutil.rmtree(dvc_repo / "data")
    shutil.rmtree(dvc_repo / ".dvc" / "cache")
    pulled = dvc(dvc_repo, "pull", env=s3_env)
    restored = {p.name: p.read_bytes() for p in (dvc_repo / "data").iterdir()}
    files_at_kill = len([k for k in stored if not k.endswith(".dir")])
    record_figure(item, "files in the remote when killed", f"{files_at_kill} of {FILES}",
                  "-", True)  # fmt: skip
    record_figure(item, "objects whose MD5 differs from their name", len(bad), "0", not bad)
    record_figure(item, "folder manifest (.dir) pushed before its files", manifest_early, "no",
                  not manifest_early)  # fmt: skip
    record_figure(item, "`dvc status -c` after the kill", "missing" if missing else "in sync",
                  "missing", bool(missing))  # fmt: skip
    said = " ".join(rerun.stdout.strip().splitlines()[-1:]) or "-"
    record_figure(item, "rerun `dvc push`", said, "completes", rerun.returncode == 0)
    record_figure(item, "`dvc status -c` after the rerun", "in sync" if not in_sync else "missing",
                  "in sync", not in_sync)  # fmt: skip
    same = restored == original
    record_figure(item, "`dvc pull` into an empty cache: files equal", same, "yes", same)
    assert not bad and not manifest_early and missing
    assert rerun.returncode == 0 and not in_sync, rerun.stderr
    assert pulled.returncode == 0 and same, pulled.stderr


def test_a_reader_sees_parts_committed_after_its_last_read(s3_env):
    """A long-lived reader (the monitor, a rollout's analysis) lists the log again on every
    read: s3fs caches a folder's listing per process, and a part another process (a replica)
    committed after the first read would stay invisible to it."""
    uri, service = f"s3://{INFERENCE_LOG_BUCKET}/{uuid.uuid4().hex}", "listing"
    commit_part(uri, service, PREDICTIONS_KIND, part_rows(0).head(10), "first")
    assert len(read_log(uri, service, PREDICTIONS_KIND)) == 10
    replica = (
        "import sys\n"
        "from services.inference_log import PREDICTIONS_KIND, commit_part\n"
        "from tests.integration.test_production_object_store import part_rows\n"
        "commit_part(sys.argv[1], sys.argv[2], PREDICTIONS_KIND, part_rows(1).head(10), 'two')\n"
    )
    subprocess.run([sys.executable, "-c", replica, uri, service], check=True, timeout=120)
    assert len(read_log(uri, service, PREDICTIONS_KIND)) == 20
