"""Request telemetry without Ray: the app's handlers on a tiny model, their records and metrics."""

from __future__ import annotations

import asyncio
import io
import json
import time
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import xgboost as xgb
from starlette.requests import Request

from services.datagen import generate
from services.inference_log import MODEL_VERSION, PREDICTION, PROBABILITY, REQUEST_ID, read_log
from services.schema import frame_to_records
from services.scoring import ScoringModel
from services.spec import load_spec
from serving import app as serving_app
from serving.api import ServiceApi
from serving.model_slot import LoadedModel
from serving.protocol import PREDICTIONS
from serving.telemetry import RequestTelemetry, started_at
from training.train import frame_matrix

pytestmark = pytest.mark.unit
SERVICE = "fraud-detection"
RECORD = {"request", "timestamp", "service", "endpoint", "model_version", "variant", "status"}


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    """Version "7": five trees on generated rows (the replica code does not care)."""
    spec = load_spec(SERVICE)
    matrix = frame_matrix(spec, generate(spec, 300, 1))
    model = ScoringModel(
        spec, xgb.train({"objective": "binary:logistic", "max_depth": 2}, matrix, 5)
    )
    return LoadedModel("7", model, ServiceApi(spec, spec.serving.max_request_rows))


class Metrics:
    """Stands in for a Ray Serve metric: keeps what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, dict[str, str]]] = []

    def inc(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append((value, dict(tags)))

    observe = inc


def watch(telemetry: RequestTelemetry) -> tuple[Metrics, Metrics]:
    count, latency = Metrics(), Metrics()
    telemetry._count, telemetry._latency = count, latency  # type: ignore[assignment]
    return count, latency


HOP_S = 0.05  # the handle's hop to the Batch replica, in the test


class BatchHandle:
    """The Batch deployment's handle, calling a real Batch replica in-process after a hop."""

    def __init__(self, replica: Any) -> None:
        batch = type(replica).score

        class Remote:
            async def remote(self, *args: Any) -> tuple[int, bytes, str]:
                await asyncio.sleep(HOP_S)
                return batch(replica, *args)

        self.score = Remote()


def batch_replica(loaded: LoadedModel) -> Any:
    cls = serving_app.Batch.func_or_class
    replica = cls(app_args(loaded))
    replica.slot.current = loaded
    return replica


def app_args(loaded: LoadedModel) -> dict[str, Any]:
    spec = loaded.model.spec
    return serving_app.AppArgs(
        service=spec.name,
        max_request_rows=spec.serving.max_request_rows,
        max_batch_rows=spec.serving.max_batch_rows,
    ).model_dump()


@pytest.fixture
def log_uri(tmp_path, monkeypatch) -> str:
    uri = str(tmp_path / "log")
    monkeypatch.setenv("MLOPS_INFERENCE_LOG_URI", uri)
    monkeypatch.delenv("MLOPS_API_KEY", raising=False)
    return uri


@pytest.fixture
def replicas(log_uri, loaded):
    """A Realtime replica (its ingress wrapper skipped) forwarding /batch to a Batch one."""
    args = serving_app.AppArgs.model_validate(app_args(loaded))
    cls = serving_app.realtime_deployment(args).func_or_class
    batch = batch_replica(loaded)
    realtime = object.__new__(cls)
    cls.__mro__[1].__init__(realtime, app_args(loaded), BatchHandle(batch))
    realtime.slot.current = loaded
    yield cls, realtime, batch
    for replica in (realtime, batch):
        replica.predictions_log.close()
        replica.telemetry.close()
    realtime.feedback_log.close()


def request(
    body: bytes, content_type: str = "application/json", accept: str | None = None
) -> Request:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if accept is not None:
        headers.append((b"accept", accept.encode()))
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope | {"query_string": b"", "root_path": ""}, receive)


def body(rows: int = 3) -> bytes:
    spec = load_spec(SERVICE)
    records = frame_to_records(spec, generate(spec, rows, 2)[spec.feature_names])
    return json.dumps({"records": records}).encode()


def close(cls, realtime, batch) -> None:
    for replica in (realtime, batch):
        replica.predictions_log.flush()
        replica.telemetry.close()


def test_answered_rows_carry_their_request_record(replicas, log_uri):
    cls, realtime, _ = replicas
    count, latency = watch(realtime.telemetry)
    started = time.perf_counter()
    response = asyncio.run(cls.predict(realtime, request(body(3))))
    client_ms = (time.perf_counter() - started) * 1e3
    assert response.status_code == 200
    close(*replicas)

    rows = read_log(log_uri, SERVICE, "predictions")
    assert len(rows) == 3 and RECORD | {"rows", "latency_ms", "request_id"} <= set(rows)
    assert rows["request"].nunique() == 1
    assert (rows["request_id"].str.rsplit("-", n=1).str[0] == rows["request"]).all()
    first = rows.iloc[0]
    assert (first["status"], first["rows"], first["variant"]) == (200, 3, "stable")
    assert (first["endpoint"], first["model_version"]) == ("predict", "7")
    assert 0 < first["latency_ms"] <= client_ms
    tags = {
        "service": SERVICE,
        "version": "7",
        "variant": "stable",
        "endpoint": "predict",
        "status": "200",
    }
    assert count.calls == [(1.0, tags)]
    assert latency.calls == [(pytest.approx(first["latency_ms"]), tags)]
    assert read_log(log_uri, SERVICE, "requests").empty  # answered: not in `requests`


@pytest.mark.parametrize(
    ("endpoint", "payload", "status"),
    [
        ("predict", b"{not json", 400),
        ("predict", b'{"records": [{"amount": -1}]}', 422),
        ("invocations", b'{"dataframe_records": 3}', 422),
        ("predict", b'{"records": [' + b"{}," * 1_500 + b"{}]}", 413),
    ],
)
def test_refused_requests_are_recorded_without_their_body(
    replicas, log_uri, endpoint, payload, status
):
    cls, realtime, _ = replicas
    count, _ = watch(realtime.telemetry)
    response = asyncio.run(getattr(cls, endpoint)(realtime, request(payload)))
    assert response.status_code == status
    close(*replicas)

    (refused,) = read_log(log_uri, SERVICE, "requests").to_dict("records")
    assert refused["status"] == status and refused["endpoint"] == endpoint
    assert (refused["model_version"], refused["rows"], refused["variant"]) == ("7", 0, "stable")
    assert refused["error"] == json.loads(response.body)["error"][:200]
    assert len(refused["error"]) <= 200 and refused["latency_ms"] > 0
    assert count.calls[0][1]["status"] == str(status)
    assert read_log(log_uri, SERVICE, "predictions").empty


@pytest.mark.parametrize(
    ("failure", "status"), [(RuntimeError("booster gone"), 500), (asyncio.CancelledError(), 499)]
)
def test_failed_and_cancelled_requests_are_recorded_and_raised(replicas, log_uri, failure, status):
    cls, realtime, _ = replicas

    async def broken(call: tuple[LoadedModel, list[dict]]) -> Any:
        raise failure

    realtime._score = broken
    with pytest.raises(type(failure)):
        asyncio.run(cls.invocations(realtime, request(b'{"inputs": ' + body(1)[12:])))
    close(*replicas)

    (record,) = read_log(log_uri, SERVICE, "requests").to_dict("records")
    assert (record["status"], record["endpoint"]) == (status, "invocations")


def test_a_batch_is_one_request_record_timed_from_the_ingress(replicas, log_uri):
    cls, realtime, batch = replicas
    count, _ = watch(batch.telemetry)
    ingress_count, _ = watch(realtime.telemetry)
    spec = load_spec(SERVICE)
    csv = generate(spec, 500, 4)[spec.feature_names].to_csv(index=False).encode()
    response = asyncio.run(cls.batch(realtime, request(csv, "text/csv")))
    assert response.status_code == 200
    bad = asyncio.run(cls.batch(realtime, request(b"a,b\n1,2\n", "text/csv")))
    assert bad.status_code == 422
    close(*replicas)

    rows = read_log(log_uri, SERVICE, "predictions")
    assert len(rows) == 500 and rows["request"].nunique() == 1
    assert set(rows["endpoint"]) == {"batch"} and set(rows["rows"]) == {500}
    assert rows["latency_ms"].iloc[0] >= HOP_S * 1e3  # from the ingress's arrival on
    (refused,) = read_log(log_uri, SERVICE, "requests").to_dict("records")
    assert (refused["status"], refused["endpoint"]) == (422, "batch")
    assert [tags["status"] for _, tags in count.calls] == ["200", "422"]
    assert ingress_count.calls == []  # the Batch replica recorded both, once


def test_a_batch_asking_for_parquet_gets_the_json_answer_as_a_table(replicas, log_uri):
    """Accept: Parquet -> row ids, outputs and version as columns; refusals stay JSON."""
    cls, realtime, _ = replicas
    spec = load_spec(SERVICE)
    csv = generate(spec, 300, 4)[spec.feature_names].to_csv(index=False).encode()
    as_json = asyncio.run(cls.batch(realtime, request(csv, "text/csv")))
    parquet = "application/json;q=0.5, application/vnd.apache.parquet"
    as_table = asyncio.run(cls.batch(realtime, request(csv, "text/csv", parquet)))
    refused = asyncio.run(cls.batch(realtime, request(b"a,b\n1,2\n", "text/csv", parquet)))
    close(*replicas)

    assert as_table.status_code == 200
    assert as_table.headers["content-type"] == "application/vnd.apache.parquet"
    table = pd.read_parquet(io.BytesIO(as_table.body))
    assert list(table) == [REQUEST_ID, PREDICTION, PROBABILITY, MODEL_VERSION]
    expected = pd.DataFrame(json.loads(as_json.body)[PREDICTIONS])
    assert table[PROBABILITY].tolist() == expected[PROBABILITY].tolist()
    assert table[PREDICTION].tolist() == expected[PREDICTION].tolist()
    assert set(table[MODEL_VERSION]) == {"7"}
    logged = read_log(log_uri, SERVICE, "predictions")
    assert set(table[REQUEST_ID]) < set(logged[REQUEST_ID]) and table[REQUEST_ID].is_unique
    assert refused.status_code == 422 and "error" in json.loads(refused.body)
    assert refused.headers["content-type"] == "application/json"


def test_batch_failures_are_answered_as_json_and_recorded_once(replicas, log_uri, monkeypatch):
    cls, realtime, batch = replicas
    monkeypatch.setattr(type(batch.slot.current.model), "predict_matrix", _raise)
    response = asyncio.run(cls.batch(realtime, request(body(2))))
    assert response.status_code == 500
    assert json.loads(response.body) == {"error": "internal error (MemoryError)"}
    close(*replicas)
    (record,) = read_log(log_uri, SERVICE, "requests").to_dict("records")
    assert record["status"] == 500 and "MemoryError" in record["error"]


def _raise(*_: Any) -> None:
    raise MemoryError("no room")


def test_the_ingress_records_the_batch_requests_it_refuses(replicas, log_uri):
    cls, realtime, _ = replicas
    big = request(b"", "text/csv")
    big.scope["headers"] = [(b"content-type", b"text/csv"), (b"content-length", b"999999999")]
    assert asyncio.run(cls.batch(realtime, big)).status_code == 413
    close(*replicas)
    (record,) = read_log(log_uri, SERVICE, "requests").to_dict("records")
    assert (record["status"], record["endpoint"], record["model_version"]) == (413, "batch", "7")


def test_telemetry_off_writes_no_record_and_no_metric(log_uri, loaded, monkeypatch):
    """MLOPS_REQUEST_TELEMETRY=0, for the benchmark's A/B: the rows as before, nothing else."""
    monkeypatch.setenv("MLOPS_REQUEST_TELEMETRY", "0")
    batch = batch_replica(loaded)
    assert not batch.telemetry.enabled
    spec = load_spec(SERVICE)
    csv = generate(spec, 20, 4)[spec.feature_names].to_csv(index=False).encode()
    assert batch.score(csv, "text/csv", time.time())[0] == 200
    assert batch.score(b"x", "text/csv")[0] == 422
    batch.predictions_log.close()
    assert batch.telemetry.close() == 0

    rows = read_log(log_uri, SERVICE, "predictions")
    assert len(rows) == 20 and not {"request", "status", "latency_ms"} & set(rows)
    assert read_log(log_uri, SERVICE, "requests").empty


def test_an_arrival_in_another_process_counts_on_this_clock():
    arrived = time.time() - 0.25
    assert 249 <= (time.perf_counter() - started_at(arrived)) * 1e3 < 400
    assert started_at(time.time() + 5) <= time.perf_counter()  # a clock ahead: never negative


def test_the_dashboard_and_the_docs_query_what_the_replicas_export():
    import re

    from services.settings import PACKAGE_REPO
    from serving.telemetry import LATENCY_METRIC, REQUESTS_METRIC, TAG_KEYS

    exported = {f"ray_{REQUESTS_METRIC}_total", f"ray_{LATENCY_METRIC}_bucket"}
    dashboard = json.loads((PACKAGE_REPO / "infra/grafana/serving.json").read_text())
    queries = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    docs = (PACKAGE_REPO / "docs/SERVING.md").read_text().split("```promql")[1].split("```")[0]
    for text in (queries, docs):
        assert set(re.findall(r"ray_mlops_\w+", text)) == exported
        grouped = {k.strip() for by in re.findall(r"by \(([^)]*)\)", text) for k in by.split(",")}
        assert grouped <= {*TAG_KEYS, "le"}


def test_concurrent_requests_share_one_model_call_and_each_gets_its_own_rows(replicas, monkeypatch):
    cls, realtime, _ = replicas
    calls: list[int] = []
    predict_records = ScoringModel.predict_records

    def counted(model: ScoringModel, records: list[dict]) -> Any:
        calls.append(len(records))
        return predict_records(model, records)

    monkeypatch.setattr(ScoringModel, "predict_records", counted)
    bodies = [body(1), body(3), body(2)]

    async def concurrently() -> list[Any]:
        return await asyncio.gather(*(cls.predict(realtime, request(b)) for b in bodies))

    merged = asyncio.run(concurrently())
    alone = [asyncio.run(cls.predict(realtime, request(b))) for b in bodies]
    close(*replicas)

    assert calls == [6, 1, 3, 2]  # the concurrent three in one call, then one call each
    for together, single in zip(merged, alone, strict=True):
        answer = [p["probability"] for p in orjson.loads(together.body)["predictions"]]
        assert answer == [p["probability"] for p in orjson.loads(single.body)["predictions"]]


def test_a_merge_holding_two_versions_scores_each_requests_rows_with_its_own(loaded):
    other = LoadedModel(
        "8",
        ScoringModel(
            loaded.model.spec,
            xgb.train(
                {"objective": "binary:logistic", "max_depth": 3},
                frame_matrix(loaded.model.spec, generate(loaded.model.spec, 300, 5)),
                9,
            ),
        ),
        loaded.api,
    )
    records = [json.loads(body(n))["records"] for n in (2, 1, 3)]
    calls = [(loaded, records[0]), (other, records[1]), (loaded, records[2])]

    raw = serving_app.score_merged(calls)

    for (version, rows), out in zip(calls, raw, strict=True):
        np.testing.assert_array_equal(out, version.model.predict_records(rows))
    assert not np.array_equal(raw[1], loaded.model.predict_records(records[1]))
