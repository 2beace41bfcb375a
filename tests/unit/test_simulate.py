"""The traffic simulator against a local HTTP stub of the serving contract (starlette+uvicorn)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from monitoring.simulate import SimulationConfig, simulate
from services.datagen import generate
from services.inference_log import LABEL, MODEL_VERSION, PREDICTION, PROBABILITY, REQUEST_ID
from services.schema import frame_to_records
from services.settings import PACKAGE_REPO
from services.spec import load_spec
from services.traffic import traffic_rows
from serving.protocol import PREDICTIONS, RECORDS
from tests.own_data import SERVICE as OWN
from tests.own_data import add_service

pytestmark = pytest.mark.unit
SERVICE = "fraud-detection"


@dataclass
class Stub:
    url: str = ""
    predict_bodies: list[dict[str, Any]] = field(default_factory=list)
    feedback_bodies: list[dict[str, Any]] = field(default_factory=list)
    fail_predict_calls: set[int] = field(default_factory=set)  # 1-based call numbers -> 503
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_app(stub: Stub) -> Starlette:
    async def predict(request: Request) -> JSONResponse:
        body = await request.json()
        with stub.lock:
            stub.predict_bodies.append(body)
            call = len(stub.predict_bodies)
        if call in stub.fail_predict_calls:
            return JSONResponse({"detail": "overloaded"}, status_code=503)
        predictions = [
            {REQUEST_ID: uuid.uuid4().hex, PREDICTION: 0, PROBABILITY: 0.1} for _ in body[RECORDS]
        ]
        return JSONResponse({MODEL_VERSION: "3", PREDICTIONS: predictions})

    async def feedback(request: Request) -> JSONResponse:
        body = await request.json()
        with stub.lock:
            stub.feedback_bodies.append(body)
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/{service:str}/predict", predict, methods=["POST"]),
            Route("/{service:str}/feedback", feedback, methods=["POST"]),
        ]
    )


@pytest.fixture
def stub() -> Iterator[Stub]:
    state = Stub()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    state.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(make_app(state), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield state
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_sends_generated_records_and_true_labels(stub):
    spec = load_spec(SERVICE)
    config = SimulationConfig(rows=45, batch_size=10, seed=3, feedback=True, concurrency=1)
    progress: list[int] = []
    result = simulate(spec, stub.url, config, progress=progress.append)

    assert (result.sent, result.failed) == (45, 0)
    assert (result.feedback_sent, result.feedback_failed) == (45, 0)
    assert dict(result.versions) == {"3": 45}
    assert progress == [10, 10, 10, 10, 5]
    expected = generate(spec, 45, 3, "none")
    sent = [r for body in stub.predict_bodies for r in body[RECORDS]]
    assert sent == frame_to_records(spec, expected[spec.feature_names])
    assert [b[LABEL] for b in stub.feedback_bodies] == expected[spec.target].tolist()
    assert all(set(b) == {REQUEST_ID, LABEL} for b in stub.feedback_bodies)


def test_drift_changes_what_is_sent(stub):
    spec = load_spec(SERVICE)
    simulate(spec, stub.url, SimulationConfig(rows=200, batch_size=200, drift="covariate"))
    amounts = [r["amount"] for r in stub.predict_bodies[0][RECORDS]]
    healthy = generate(spec, 200, 0, "none")["amount"]
    assert sum(amounts) / len(amounts) > 1.5 * healthy.mean()


def test_failed_batches_are_counted_and_get_no_feedback(stub):
    stub.fail_predict_calls = {2}
    spec = load_spec(SERVICE)
    config = SimulationConfig(rows=30, batch_size=10, feedback=True, concurrency=1)
    result = simulate(spec, stub.url, config)
    assert (result.sent, result.failed) == (20, 10)
    assert result.feedback_sent == 20 and len(stub.feedback_bodies) == 20
    assert result.errors == {"HTTP 503": 1}


def test_unreachable_server_counts_failures_without_raising():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening
    result = simulate(load_spec(SERVICE), url, SimulationConfig(rows=15, batch_size=5))
    assert (result.sent, result.failed) == (0, 15)
    assert sum(result.errors.values()) == 3


def test_cli_reports_counts(stub, monkeypatch):
    from mlops.cli import app

    monkeypatch.setenv("MLOPS_SERVE_URL", stub.url)
    args = ["simulate", "-s", SERVICE, "--rows", "25", "--batch-size", "5", "--feedback"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "sent 25, failed 0, feedback 25 (failed 0)" in result.output
    assert "v3: 25" in result.output
    assert len(stub.feedback_bodies) == 25


def test_cli_fails_when_nothing_gets_through(monkeypatch):
    from mlops.cli import app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MLOPS_SERVE_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
    result = CliRunner().invoke(app, ["simulate", "-s", SERVICE, "--rows", "5"])
    assert result.exit_code == 1
    assert "no request succeeded" in result.output


@pytest.fixture
def own_data(tmp_path, monkeypatch):
    """A tree whose only service has no generator: its traffic comes from its snapshot."""
    shutil.copy(PACKAGE_REPO / "params.yaml", tmp_path)
    snapshot = add_service(tmp_path)
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(tmp_path))
    return snapshot


def test_a_service_without_a_generator_sends_rows_of_its_snapshot(stub, own_data):
    spec = load_spec(OWN)
    config = SimulationConfig(rows=30, batch_size=10, seed=2, feedback=True, concurrency=1)
    result = simulate(spec, stub.url, config)
    assert (result.sent, result.feedback_sent) == (30, 30)
    expected = traffic_rows(spec, 30, 2)
    sent = [r for body in stub.predict_bodies for r in body["records"]]
    assert sent == frame_to_records(spec, expected[spec.feature_names])
    assert [b["label"] for b in stub.feedback_bodies] == expected[spec.target].tolist()


def test_cli_without_generator_or_snapshot_is_one_line(stub, own_data, monkeypatch):
    from mlops.cli import app

    own_data.unlink()
    monkeypatch.setenv("MLOPS_SERVE_URL", stub.url)
    result = CliRunner().invoke(app, ["simulate", "-s", OWN, "--rows", "5"])
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert error == [
        f"error: data/{OWN}/snapshot.parquet: not found (services/{OWN} has no generate.py, "
        "so its rows come from the snapshot): run `mlops data init` or `dvc pull` first"
    ]
    assert "Traceback" not in result.output and stub.predict_bodies == []


def test_cli_drift_the_spec_cannot_show_is_one_line(stub, own_data, monkeypatch):
    from mlops.cli import app

    monkeypatch.setenv("MLOPS_SERVE_URL", stub.url)
    args = ["simulate", "-s", OWN, "--rows", "5", "--drift", "new-categories"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert f"error: drift 'new-categories' needs a categorical feature and {OWN}" in result.output
    assert stub.predict_bodies == []
