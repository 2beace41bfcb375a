"""Serving against a real Ray cluster and MLflow server: endpoints, validation, batch, log."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest

from services.datagen import generate
from services.inference_log import (
    FEEDBACK_KIND,
    LABEL,
    MODEL_VERSION,
    PREDICTION,
    PREDICTIONS_KIND,
    PROBABILITY,
    REQUEST_ID,
    read_log,
)
from services.schema import frame_to_records
from services.settings import get_settings
from services.spec import load_spec
from serving.deploy import deploy
from serving.manifest import manifest_path, set_model_version, write_text
from serving.protocol import DF_RECORDS, DF_SPLIT, INPUTS, INSTANCES, PREDICTIONS, RECORDS
from tests.load import realtime_replicas

pytestmark = pytest.mark.integration
SERVICES = ["fraud-detection", "demand-forecast"]


def records(service: str, rows: int, seed: int = 1) -> list[dict]:
    spec = load_spec(service)
    return frame_to_records(spec, generate(spec, rows, seed)[spec.feature_names])


@pytest.fixture(scope="module")
def client(served) -> httpx.Client:
    with httpx.Client(base_url=get_settings().serve_url, timeout=120) as http:
        yield http


@pytest.mark.parametrize("service", SERVICES)
def test_predict_returns_one_prediction_per_record(client, served, service):
    response = client.post(f"/{service}/predict", json={RECORDS: records(service, 3)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body[MODEL_VERSION] == served[service]
    assert len(body[PREDICTIONS]) == 3
    assert len({p[REQUEST_ID] for p in body[PREDICTIONS]}) == 3
    if load_spec(service).task == "binary":
        assert all(0 <= p[PROBABILITY] <= 1 and p[PREDICTION] in (0, 1) for p in body[PREDICTIONS])


@pytest.mark.parametrize("service", SERVICES)
def test_invocations_speaks_the_mlflow_scoring_protocol(client, service):
    rows = records(service, 2)
    frame = pd.DataFrame(rows)
    payloads = [
        {DF_RECORDS: rows},
        {DF_SPLIT: json.loads(frame.to_json(orient="split", index=False))},
        {INPUTS: rows},
        {INSTANCES: rows},
        {INPUTS: {c: frame[c].tolist() for c in frame.columns}},
    ]
    results = []
    for payload in payloads:
        response = client.post(f"/{service}/invocations", json=payload)
        assert response.status_code == 200, (payload, response.text)
        results.append(response.json()[PREDICTIONS])
    assert all(r == results[0] for r in results)
    assert len(results[0]) == 2 and PREDICTION in results[0][0]


@pytest.mark.parametrize(
    ("service", "runtime"), [("fraud-detection", "onnx"), ("demand-forecast", "xgboost")]
)
def test_health_and_openapi(client, served, service, runtime):
    health = client.get(f"/{service}/health").json()
    assert health["ready"] and health[MODEL_VERSION] == served[service]
    assert health["runtime"] == runtime  # fraud-detection's registered conversion, by default
    schema = client.get(f"/{service}/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    records_schema = body["schema"]["properties"][RECORDS]
    assert records_schema["maxItems"] == load_spec(service).serving.max_request_rows
    assert set(records_schema["items"]["properties"]) == set(load_spec(service).feature_names)


def post_parquet(
    client: httpx.Client, frame: pd.DataFrame, accept: str = "application/json"
) -> httpx.Response:
    """A frame as a Parquet body to fraud-detection's /batch."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return client.post(
        "/fraud-detection/batch",
        content=buffer.getvalue(),
        headers={"content-type": "application/vnd.apache.parquet", "accept": accept},
    )


@pytest.mark.parametrize("content", ["json", "csv", "parquet"])
def test_batch_scores_ten_thousand_rows(client, served, content):
    rows = records("fraud-detection", 10_000, seed=5)
    frame = pd.DataFrame(rows)
    if content == "json":
        response = client.post("/fraud-detection/batch", json={RECORDS: rows})
    elif content == "csv":
        response = client.post(
            "/fraud-detection/batch",
            content=frame.to_csv(index=False),
            headers={"content-type": "text/csv"},
        )
    else:
        response = post_parquet(client, frame)
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert body[MODEL_VERSION] == served["fraud-detection"]
    assert len(body[PREDICTIONS]) == 10_000


def test_batch_at_the_row_limit_crosses_the_deployment_handle(client, served):
    """max_batch_rows rows: request and response (~10 MB of JSON) pass between deployments."""
    spec = load_spec("fraud-detection")
    frame = generate(spec, spec.serving.max_batch_rows, seed=8)[spec.feature_names]
    response = post_parquet(client, frame)
    assert response.status_code == 200, response.text[:500]
    assert len(response.json()[PREDICTIONS]) == spec.serving.max_batch_rows


def test_batch_answers_a_parquet_table_when_asked(client, served):
    frame = pd.DataFrame(records("fraud-detection", 10_000, seed=6))
    response = post_parquet(client, frame, accept="application/vnd.apache.parquet")
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    table = pd.read_parquet(io.BytesIO(response.content))
    assert list(table) == [REQUEST_ID, PREDICTION, PROBABILITY, MODEL_VERSION]
    assert len(table) == 10_000 and table[REQUEST_ID].is_unique
    assert set(table[MODEL_VERSION]) == {served["fraud-detection"]}


def _good(service: str = "fraud-detection") -> dict:
    return records(service, 1)[0]


BAD_REQUESTS = {
    "missing field": (
        {RECORDS: [{k: v for k, v in _good().items() if k != "amount"}]},
        422,
        "amount",
    ),
    "wrong type": ({RECORDS: [_good() | {"hour": "noon"}]}, 422, "hour"),
    "out of range": ({RECORDS: [_good() | {"amount": -5}]}, 422, "amount"),
    "unknown category": ({RECORDS: [_good() | {"channel": "carrier-pigeon"}]}, 422, "channel"),
    "unknown field": ({RECORDS: [_good() | {"colour": "red"}]}, 422, "colour"),
    "empty list": ({RECORDS: []}, 422, RECORDS),
    "too many records": ({RECORDS: [_good()] * 1001}, 413, "1000"),
    "not an object": ([1, 2], 422, "body"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_predict_requests_get_a_4xx_naming_the_problem(client, served, case):
    payload, status, named = BAD_REQUESTS[case]
    response = client.post("/fraud-detection/predict", json=payload)
    assert response.status_code == status, response.text
    assert named in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        (b"{not json", 400, "JSON"),
        (b'{"records": [{"amount": NaN}]}', 422, "amount"),
        (b"", 400, "JSON"),
    ],
)
def test_unreadable_or_non_finite_bodies_get_4xx(client, served, body, status, named):
    response = client.post(
        "/fraud-detection/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    assert named in response.json()["error"]


def test_oversized_batch_gets_413_with_the_limit(client, served):
    limit = load_spec("fraud-detection").serving.max_batch_rows
    frame = pd.DataFrame(records("fraud-detection", 10))
    big = pd.concat([frame] * (limit // 10 + 1), ignore_index=True)
    response = client.post(
        "/fraud-detection/batch",
        content=big.to_csv(index=False),
        headers={"content-type": "text/csv"},
    )
    assert response.status_code == 413
    assert str(limit) in response.json()["error"]


def test_batch_rejects_unknown_content_type_and_bad_rows(client, served):
    response = client.post(
        "/fraud-detection/batch", content=b"x", headers={"content-type": "application/xml"}
    )
    assert response.status_code == 415
    frame = pd.DataFrame(records("fraud-detection", 5)).assign(hour=99)
    response = client.post(
        "/fraud-detection/batch",
        content=frame.to_csv(index=False),
        headers={"content-type": "text/csv"},
    )
    assert response.status_code == 422
    assert "hour" in response.json()["error"]


def test_feedback_is_accepted_and_bad_labels_rejected(client, served):
    assert (
        client.post(
            "/fraud-detection/feedback", json={REQUEST_ID: "unknown-id", LABEL: 1}
        ).status_code
        == 202
    )
    bad = client.post("/fraud-detection/feedback", json={REQUEST_ID: "abc", LABEL: 3})
    assert bad.status_code == 422 and "label" in bad.json()["error"]
    missing = client.post("/demand-forecast/feedback", json={LABEL: 3.5})
    assert missing.status_code == 422 and "request_id" in missing.json()["error"]


def test_every_served_prediction_and_feedback_reaches_the_log(client, served):
    ids = []
    for _ in range(20):
        response = client.post(
            "/demand-forecast/predict", json={RECORDS: records("demand-forecast", 5, seed=9)}
        )
        ids += [p[REQUEST_ID] for p in response.json()[PREDICTIONS]]
    for rid in ids[:10]:
        assert (
            client.post(
                "/demand-forecast/feedback", json={REQUEST_ID: rid, LABEL: 12.5}
            ).status_code
            == 202
        )
    # removing the application shuts its replicas down gracefully; then it comes back
    path = manifest_path()
    text = path.read_text()
    set_model_version(path, "demand-forecast", None)
    deploy(path)
    write_text(path, text)
    deploy(path)
    settings = get_settings()
    logged = read_log(settings.inference_log_uri, "demand-forecast", PREDICTIONS_KIND)
    assert set(ids) <= set(logged[REQUEST_ID])
    assert logged[REQUEST_ID].isin(ids).sum() == len(ids)  # each exactly once
    feedback = read_log(settings.inference_log_uri, "demand-forecast", FEEDBACK_KIND)
    assert set(ids[:10]) <= set(feedback[REQUEST_ID])


def test_realtime_replicas_run_at_full_priority_without_access_lines(client, served):
    """Two serving defaults that keep the tail short (serving/k8s.py, serving/manifest.py)."""
    replicas = realtime_replicas("fraud-detection")
    assert replicas and all(r.pid and psutil.Process(r.pid).nice() == 0 for r in replicas)
    # Ray writes access lines in buffers of 1,000 (throughput mode): 2,000 would show, even
    # spread over two replicas
    body = {RECORDS: records("fraud-detection", 1)}
    for _ in range(2_000):
        assert client.post("/fraud-detection/predict", json=body).status_code == 200
    logs = Path("/tmp/ray/session_latest/logs/serve")
    replica_logs = list(logs.glob("replica_fraud-detection_Realtime_*.log"))
    assert replica_logs, f"no replica logs in {logs}"
    assert not any("POST /fraud-detection/predict" in log.read_text() for log in replica_logs)
