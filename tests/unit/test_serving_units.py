"""Serving pieces without Ray: manifest edits, rendered files in sync, log writer, model slot."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest

from services.inference_log import (
    FEEDBACK_KIND,
    MODEL_VERSION,
    PREDICTIONS_KIND,
    PROBABILITY,
    REQUEST_ID,
    SERVICE,
    TIMESTAMP,
    read_log,
    rows_table,
    with_columns,
    write_part,
)
from services.settings import PACKAGE_REPO
from services.spec import load_spec
from serving import k8s, manifest
from serving.api import row_id_column, row_ids
from serving.log_writer import InferenceLogWriter
from serving.model_slot import LoadedModel, ModelSlot
from tests.own_data import SERVICE as OWN
from tests.own_data import add_service

pytestmark = pytest.mark.unit


@pytest.fixture
def manifest_copy(tmp_path):
    path = tmp_path / "production.yaml"
    shutil.copy(manifest.manifest_path(), path)
    return path


def test_committed_rendered_files_are_in_sync_with_catalogue_and_manifest():
    assert manifest.drift_from_catalogue(manifest.manifest_path()) == []
    assert k8s.k8s_path().read_text() == k8s.render(manifest.manifest_path())


def test_set_model_version_edits_every_deployment_and_keeps_comments(manifest_copy):
    before = manifest_copy.read_text()
    replaced = manifest.set_model_version(manifest_copy, "fraud-detection", "7")
    after = manifest_copy.read_text()
    assert replaced == manifest.versions(manifest.manifest_path())["fraud-detection"]
    assert manifest.versions(manifest_copy)["fraud-detection"] == "7"
    assert after.count("model_version: '7'") + after.count('model_version: "7"') == 2
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert comments and all(line in after for line in comments)
    deployable = manifest.deployable(manifest.load(manifest_copy))
    assert [a["name"] for a in deployable["applications"]] == [
        name for name, v in manifest.versions(manifest_copy).items() if v
    ]


def test_set_model_version_adds_the_application_of_a_catalogue_service(tmp_path, monkeypatch):
    """A service added to the catalogue is promoted with no `mlops render manifest` first."""
    shutil.copytree(PACKAGE_REPO / "services", tmp_path / "services")
    shutil.copy(PACKAGE_REPO / "params.yaml", tmp_path)
    add_service(tmp_path, snapshot=False)
    path = tmp_path / "production.yaml"
    shutil.copy(manifest.manifest_path(), path)
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(tmp_path))
    before = manifest.versions(path)
    assert OWN not in before

    assert manifest.set_model_version(path, OWN, "1") is None
    assert manifest.versions(path) == before | {OWN: "1"}
    assert manifest.drift_from_catalogue(path) == []  # the application its spec implies
    with pytest.raises(manifest.ManifestError, match="no application for service 'nope'"):
        manifest.set_model_version(path, "nope", "1")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("route_prefix: /fraud-detection", "route_prefix: /x"), "route_prefix"),
        (lambda t: t.replace("name: fraud-detection", "name: ../x"), "unknown service"),
        (lambda t: t.replace("serving.app:build_app", "os:system", 1), "import_path"),
        (lambda t: "applications: 3\n", "'applications' must be a list"),
        (lambda t: t + "\n  - [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_manifests_are_refused_with_the_field(manifest_copy, edit, message):
    manifest_copy.write_text(edit(manifest_copy.read_text()))
    with pytest.raises(manifest.ManifestError, match=message):
        manifest.load(manifest_copy)


@pytest.mark.parametrize("version", ["0", "v1", "../1", "1; rm -rf /", ""])
def test_invalid_versions_are_refused_and_change_nothing(manifest_copy, version):
    before = manifest_copy.read_bytes()
    with pytest.raises(manifest.ManifestError):
        manifest.set_model_version(manifest_copy, "fraud-detection", version)
    assert manifest_copy.read_bytes() == before


def _rows(n: int, start: int = 0) -> list[dict]:
    stamp = pd.Timestamp.now(tz="UTC")
    return [{REQUEST_ID: f"r{i}", TIMESTAMP: stamp, "x": float(i)} for i in range(start, start + n)]


def test_log_writer_flushes_on_size_interval_and_close(tmp_path):
    uri = str(tmp_path / "log")
    writer = InferenceLogWriter(uri, "svc", PREDICTIONS_KIND, "w", max_rows=100, interval_s=0.2)
    writer.append_rows(_rows(150))  # over the size: woken at once
    writer.append_rows(_rows(3, start=150))
    writer.append_frame(pd.DataFrame(_rows(7, start=153)))
    written = writer.close()
    frame = read_log(uri, "svc", PREDICTIONS_KIND)
    assert sorted(frame[REQUEST_ID]) == sorted(f"r{i}" for i in range(160))
    assert writer.written == 160 and written >= 0


def test_log_writer_keeps_keys_the_first_row_lacks(tmp_path):
    uri = str(tmp_path / "log")
    writer = InferenceLogWriter(uri, "svc", PREDICTIONS_KIND, "w", interval_s=60)
    first, second = _rows(2)
    writer.append_rows([first, second | {"late": "x"}])
    writer.close()
    assert writer.written == 2
    frame = read_log(uri, "svc", PREDICTIONS_KIND).sort_values(REQUEST_ID)
    assert frame["late"].tolist() == [None, "x"]
    assert frame["x"].tolist() == [0.0, 1.0]


def test_a_batch_frame_with_its_columns_is_typed_as_its_rows_logged_one_by_one():
    """/batch logs a frame plus per-row and per-request columns; real-time requests log rows:
    both must give the log the same types."""
    frame = pd.DataFrame({"amount": [1.5, 2.0], "hour": [3, 4], "channel": ["web", None]})
    shared = {TIMESTAMP: datetime(2026, 12, 6, tzinfo=UTC), SERVICE: "svc", "rows": 2, "e": None}
    ids, probabilities = ["a-0", "a-1"], np.array([0.25, 0.75])
    table = with_columns(frame, {REQUEST_ID: ids, **shared, PROBABILITY: probabilities})
    rows = [
        {**record, REQUEST_ID: rid, **shared, PROBABILITY: p}
        for record, rid, p in zip(frame.to_dict("records"), ids, probabilities, strict=True)
    ]
    assert table.schema.remove_metadata() == rows_table(rows).schema
    assert table.to_pylist() == rows


@pytest.mark.filterwarnings("error::FutureWarning")  # pandas' concat of all-NA columns
def test_read_log_unifies_parts_whose_columns_differ(tmp_path):
    uri = str(tmp_path / "log")
    first, second, third = _rows(3)
    parts = [
        first | {"amount": None, "count": 1},  # all null: Arrow's null type
        second | {"amount": 2.5, "count": 2.5},  # ints, then floats
        third | {"amount": 4.0},  # a column missing
    ]
    for row in parts:
        write_part(uri, "svc", PREDICTIONS_KIND, pa.Table.from_pylist([row]), "w")
    frame = read_log(uri, "svc", PREDICTIONS_KIND).sort_values(REQUEST_ID)
    assert frame[REQUEST_ID].tolist() == ["r0", "r1", "r2"]
    assert frame["amount"].dtype == "float64" and frame["count"].dtype == "float64"
    assert frame["amount"].tolist()[1:] == [2.5, 4.0] and frame["count"].tolist()[:2] == [1, 2.5]
    assert frame["amount"].isna().tolist() == [True, False, False]
    assert frame["count"].isna().tolist() == [False, False, True]


def test_log_writer_keeps_rows_when_a_write_fails(tmp_path, monkeypatch):
    uri = str(tmp_path / "log")
    writer = InferenceLogWriter(uri, "svc", FEEDBACK_KIND, "w", interval_s=60)
    calls = {"n": 0}
    real = InferenceLogWriter.flush.__globals__["commit_part"]

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setitem(InferenceLogWriter.flush.__globals__, "commit_part", flaky)
    writer.append_rows(_rows(5))
    assert writer.flush() == 0  # failed: kept
    writer.close()
    assert len(read_log(uri, "svc", FEEDBACK_KIND)) == 5


def test_model_slot_keeps_serving_the_old_version_when_a_load_fails(monkeypatch):
    loaded = LoadedModel("1", SimpleNamespace(runtime="onnx"), object())  # type: ignore[arg-type]

    def load(service, version, max_rows):
        if version == "1":
            return loaded
        raise RuntimeError(f"version {version} not found")

    monkeypatch.setattr("serving.model_slot.load_version", load)
    frozen = []
    monkeypatch.setattr("serving.model_slot.gc.freeze", lambda: frozen.append(slot.current))
    slot = ModelSlot("svc", 10)
    asyncio.run(slot.switch_to("1"))
    assert frozen == [loaded]  # the heap is frozen once the version is in place
    asyncio.run(slot.switch_to("2"))
    assert frozen == [loaded]  # not after a failed load
    health = slot.health()
    assert slot.current is loaded
    assert health[MODEL_VERSION] == "1" and health["desired_version"] == "2"
    assert health["runtime"] == "onnx"  # what scores the version that serves
    assert not health["ready"] and "version 2 not found" in health["error"]
    asyncio.run(slot.switch_to("1"))
    assert slot.health()["ready"] and slot.health()["error"] is None


def test_model_slot_without_any_model_raises(monkeypatch):
    def load(service, version, max_rows):
        raise RuntimeError("no such version")

    monkeypatch.setattr("serving.model_slot.load_version", load)
    slot = ModelSlot("svc", 10)
    with pytest.raises(RuntimeError):
        asyncio.run(slot.switch_to("9"))
    assert slot.current is None and "no such version" in slot.health()["error"]


def test_a_replica_merges_requests_as_its_application_says_and_reports_it(tmp_path, monkeypatch):
    from serving import app as serving_app
    from serving.deployments import REQUEST_MERGING_KEY

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    spec = load_spec("fraud-detection")
    rendered = manifest.render_application(spec, "1")["args"]
    assert rendered[REQUEST_MERGING_KEY] == spec.serving.request_merging.model_dump()
    assert REQUEST_MERGING_KEY in serving_app.AppArgs.model_fields
    args = rendered | {REQUEST_MERGING_KEY: {"max_requests": 5, "wait_ms": 2.5}}
    realtime = serving_app.realtime_deployment(serving_app.AppArgs(**args)).func_or_class
    replica = object.__new__(realtime)
    super(realtime, replica).__init__(args, None)  # the class under Serve's ingress wrapper
    try:
        assert (replica._score.max_items, replica._score.wait_s) == (5, 0.0025)
        replica.slot.adopt(LoadedModel("1", SimpleNamespace(runtime="onnx"), object()))  # type: ignore[arg-type]
        health = asyncio.run(replica.health())
        assert orjson.loads(health.body)[REQUEST_MERGING_KEY] == {"max_requests": 5, "wait_ms": 2.5}
    finally:
        replica.predictions_log.close()
        replica.feedback_log.close()


@pytest.mark.parametrize("count", [0, 1, 10, 11, 999, 100_001])
def test_a_tables_row_id_column_holds_the_row_ids(count):
    assert row_id_column("f00d", count).to_pylist() == row_ids("f00d", count)
