"""Reliability against the running stack: generated hostile traffic and API-key authentication.

Needs the `served` fixture (MLflow server, Ray cluster, every service promoted). The
schemathesis run writes its figures to `<MLOPS_HOME>/reports/schemathesis.json` and prints
them; docs/RELIABILITY.md quotes them.
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from mlops.sandbox import manifest_copy
from services.datagen import generate
from services.inference_log import LABEL, REQUEST_ID
from services.schema import frame_to_records
from services.settings import get_settings
from services.spec import load_spec
from serving.api import Feedback
from serving.auth import API_KEY_ENV
from serving.deploy import app_health, deploy
from serving.manifest import manifest_path
from serving.protocol import (
    DF_RECORDS,
    DF_SPLIT,
    INPUTS,
    INSTANCES,
    RECORDS,
    SPLIT_COLUMNS,
    SPLIT_DATA,
)
from tests.figures import record_figure

pytestmark = pytest.mark.reliability
SERVICES = ["fraud-detection", "demand-forecast"]

# generated cases per operation and mode; >= 1,000 per service in total (CI budget ~3 min)
BUDGET: dict[str, dict[GenerationMode, int]] = {
    "/predict": {GenerationMode.POSITIVE: 600, GenerationMode.NEGATIVE: 600},
    "/invocations": {GenerationMode.POSITIVE: 300, GenerationMode.NEGATIVE: 300},
    "/feedback": {GenerationMode.POSITIVE: 150, GenerationMode.NEGATIVE: 150},
    "/batch": {GenerationMode.POSITIVE: 100, GenerationMode.NEGATIVE: 100},
    "/health": {GenerationMode.POSITIVE: 1},
}


def openapi_with_bodies(document: dict[str, Any], max_batch_rows: int) -> dict[str, Any]:
    """The served document, plus request bodies for the routes that read raw bytes.

    /predict documents its body (from the spec); /invocations, /batch and /feedback parse
    the body themselves, so the document does not describe it and schemathesis would send
    none. Their bodies are described here from the same record schema.
    """
    document = copy.deepcopy(document)
    predict = document["paths"]["/predict"]["post"]["requestBody"]["content"]
    records = predict["application/json"]["schema"]["properties"][RECORDS]
    names = sorted(records["items"]["properties"])

    def body(schema: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    def single(key: str, value: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {key: value},
            "required": [key],
            "additionalProperties": False,
        }

    split = {
        "type": "object",
        "properties": {
            SPLIT_COLUMNS: {"type": "array", "items": {"enum": names}, "minItems": 1},
            SPLIT_DATA: {"type": "array", "items": {"type": "array"}, "minItems": 1},
        },
        "required": [SPLIT_COLUMNS, SPLIT_DATA],
    }
    invocations = {
        "oneOf": [
            single(DF_RECORDS, records),
            single(INPUTS, records),
            single(DF_SPLIT, split),
            single(INSTANCES, records),
        ]
    }
    paths = document["paths"]
    paths["/invocations"]["post"]["requestBody"] = body(invocations)
    # /batch takes the same records, up to its own limit (a longer list is what it is for)
    batch_records = {**records, "maxItems": max_batch_rows}
    paths["/batch"]["post"]["requestBody"] = body(single(RECORDS, batch_records))
    paths["/feedback"]["post"]["requestBody"] = body(Feedback.model_json_schema())
    return document


def integer_fields(document: dict[str, Any]) -> frozenset[str]:
    """Record fields the document types as integers (directly or in an anyOf with null)."""
    predict = document["paths"]["/predict"]["post"]["requestBody"]["content"]
    items = predict["application/json"]["schema"]["properties"][RECORDS]["items"]
    return frozenset(
        name
        for name, field in items["properties"].items()
        if "integer" in {field.get("type"), *(a.get("type") for a in field.get("anyOf", []))}
    )


def whole_floats_as_ints(value: Any, integers: frozenset[str]) -> Any:
    """3.0 -> 3 in integer fields: JSON Schema counts 3.0 as an integer, the service's strict
    validation does not (a documented choice), so positive cases send integers as integers."""
    if isinstance(value, list):
        return [whole_floats_as_ints(v, integers) for v in value]
    if isinstance(value, dict):
        return {
            k: int(v)
            if k in integers and isinstance(v, float) and v.is_integer()
            else whole_floats_as_ints(v, integers)
            for k, v in value.items()
        }
    return value


def run_operation(
    operation: Any,
    mode: GenerationMode,
    examples: int,
    base_url: str,
    session: requests.Session,
    integers: frozenset[str] = frozenset(),
) -> tuple[Counter[int], list[str]]:
    """Send `examples` generated cases; returns status counts and the 5xx reproductions."""
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []

    def adjust(case: Any) -> Any:
        if mode is GenerationMode.POSITIVE and isinstance(case.body, dict | list):
            case.body = whole_floats_as_ints(case.body, integers)
        return case

    @given(case=operation.as_strategy(generation_mode=mode).map(adjust))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,  # no .hypothesis folder in the checkout
        derandomize=True,  # the same cases on every run
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def send(case: Any) -> None:
        response = case.call(base_url=base_url, session=session, timeout=60)
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            server_errors.append(f"{response.status_code} {case.as_curl_command()[:500]}")

    send()
    return statuses, server_errors


@pytest.mark.parametrize("service", SERVICES)
def test_schemathesis_finds_no_server_error(served, service):
    base_url = f"{get_settings().serve_url}/{service}"
    served_document = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    assert set(served_document["paths"]) == set(BUDGET)
    limit = load_spec(service).serving.max_batch_rows
    schema = schemathesis.openapi.from_dict(openapi_with_bodies(served_document, limit))
    integers = integer_fields(served_document)
    report: dict[str, Any] = {"service": service, "operations": {}}
    all_errors: list[str] = []
    started = time.monotonic()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode, examples in BUDGET[operation.path].items():
                statuses, errors = run_operation(
                    operation, mode, examples, base_url, session, integers
                )
                key = f"{operation.method.upper()} {operation.path} {mode.value}"
                report["operations"][key] = dict(sorted(statuses.items()))
                all_errors.extend(errors)
    report["cases"] = sum(sum(s.values()) for s in report["operations"].values())
    report["server_errors"] = len(all_errors)
    report["seconds"] = round(time.monotonic() - started, 1)
    out = get_settings().home / "reports" / f"schemathesis-{service}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))

    item = f"Generated requests (schemathesis), {service}"
    record_figure(item, "cases", report["cases"], ">= 1,000", report["cases"] >= 1_000)
    record_figure(item, "responses >= 500", len(all_errors), "0", not all_errors)
    record_figure(item, "seconds", report["seconds"], "-", True)
    assert not all_errors, "\n".join(all_errors[:10])
    assert report["cases"] >= 1_000
    for key in ("POST /predict positive", "POST /batch positive"):
        accepted = report["operations"][key]
        assert set(accepted) == {200}, (key, accepted)  # schema-valid records are all scored
    for key, statuses in report["operations"].items():
        if key.endswith("negative"):
            assert all(400 <= status < 500 for status in statuses), (key, statuses)
    assert app_health(service)["ready"]  # and the service still answers


# --- hand-written hostile bodies through the proxy, the ingress and the batch deployment ------

NESTED = b"[" * 10_000 + b"]" * 10_000


def test_hostile_bodies_get_4xx_through_the_whole_stack(served):
    service = "fraud-detection"
    limit = load_spec(service).serving.max_request_rows * 1_024 + 1_024
    record = json.dumps({RECORDS: records(service, 1)})
    cases: list[tuple[str, bytes, str, int]] = [
        ("/predict", b'{"records": [', "application/json", 400),
        ("/predict", NESTED, "application/json", 400),
        ("/predict", record.replace('"amount": ', '"amount": NaN, "x": ').encode(), "", 422),
        (
            "/predict",
            record.replace('"hour": ', '"hour": 1' + "0" * 400 + ', "x": ').encode(),
            "",
            422,
        ),
        ("/predict", b" " * (limit + 1), "application/json", 413),
        ("/invocations", b'{"inputs": ' + NESTED + b"}", "application/json", 400),
        ("/invocations", b'{"dataframe_split": {"columns": [[1]], "data": [[1]]}}', "", 422),
        ("/feedback", b'{"request_id": "a", "label": 1' + b"0" * 400 + b"}", "", 422),
        ("/feedback", b" " * 5_000, "application/json", 413),
        ("/batch", b'amount,hour\n1,2\n"unterminated', "text/csv", 400),
        ("/batch", b"PAR1garbagePAR1", "application/vnd.apache.parquet", 400),
        ("/batch", b"<x/>", "application/xml", 415),
        ("/batch", b"amount,hour\n1e300,inf\n", "text/csv", 422),
    ]
    with httpx.Client(base_url=f"{get_settings().serve_url}/{service}", timeout=60) as http:
        for route, content, kind, expected in cases:
            headers = {"content-type": kind} if kind else {"content-type": "application/json"}
            response = http.post(route, content=content, headers=headers)
            assert response.status_code == expected, (route, content[:60], response.text[:300])
            body = response.json()
            assert set(body) == {"error", "detail"} and body["error"], (route, body)
    assert app_health(service)["ready"]


# --- API-key authentication (a redeploy with MLOPS_API_KEY in the replicas' environment) ---

TEST_KEY = "reliability-test-key-" + "7f3a9c"  # a throwaway value for this test cluster only


def wait_ready(service: str, deadline_s: float = 180.0) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        health = app_health(service)
        if health.get("ready"):
            return health
        time.sleep(1.0)
    return health


def records(service: str, rows: int = 2) -> list[dict[str, Any]]:
    spec = load_spec(service)
    return frame_to_records(spec, generate(spec, rows, 3)[spec.feature_names])


def keyed(app: Any) -> None:
    """The API key in an application's runtime env, where the deployer puts it
    (serving.deploy.runtime_env_vars): only that application's replicas restart."""
    app.setdefault("runtime_env", {}).setdefault("env_vars", {})[API_KEY_ENV] = TEST_KEY


def test_api_key_guards_inference_and_leaves_health_open(served, tmp_path):
    service = "fraud-detection"
    body = {RECORDS: records(service)}
    try:
        deploy(manifest_copy(tmp_path / "manifest.yaml", service, keyed))
        assert wait_ready(service).get("ready")
        with httpx.Client(base_url=f"{get_settings().serve_url}/{service}", timeout=60) as http:
            missing = http.post("/predict", json=body)
            assert missing.status_code == 401
            assert missing.json() == {
                "error": "missing API key: send 'Authorization: Bearer <key>' "
                "or 'X-API-Key: <key>'",
                "detail": [],
            }
            assert missing.headers["www-authenticate"].startswith("Bearer")
            wrong = http.post("/predict", json=body, headers={"X-API-Key": TEST_KEY + "x"})
            assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid API key")
            for route, payload in (
                ("/invocations", {INPUTS: body[RECORDS]}),
                ("/batch", body),
                ("/feedback", {REQUEST_ID: "abc", LABEL: 1}),
            ):
                assert http.post(route, json=payload).status_code == 401, route
            bearer = http.post(
                "/predict", json=body, headers={"Authorization": f"Bearer {TEST_KEY}"}
            )
            assert bearer.status_code == 200, bearer.text
            header = http.post(
                "/invocations", json={INPUTS: body[RECORDS]}, headers={"X-API-Key": TEST_KEY}
            )
            assert header.status_code == 200, header.text
            assert http.get("/health").status_code == 200
            assert http.get("/openapi.json").status_code == 200
            assert http.get("/docs").status_code == 200
            # the key is checked before the size: an oversized anonymous body is a 401, not a 413
            limit = load_spec(service).serving.max_request_rows * 1_024 + 1_024
            oversized = http.post("/predict", content=b" " * (limit + 1))
            assert oversized.status_code == 401
            with_key = {"X-API-Key": TEST_KEY}
            assert (
                http.post("/predict", content=b" " * (limit + 1), headers=with_key).status_code
                == 413
            )
    finally:
        deploy(manifest_path())
        wait_ready(service)
    restored = httpx.post(f"{get_settings().serve_url}/{service}/predict", json=body, timeout=60)
    assert restored.status_code == 200, restored.text
