"""The `mlops` command line: sample output and clean errors."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from typer.testing import CliRunner

from mlops.cli import app
from services.schema import record_model
from services.spec import load_spec
from serving.protocol import RECORDS

pytestmark = pytest.mark.unit

runner = CliRunner()


def sample(*args: str):
    return runner.invoke(app, ["sample", *args])


@pytest.mark.parametrize("service", ["fraud-detection", "demand-forecast"])
def test_sample_prints_valid_records(service):
    result = sample("--service", service, "--rows", "3")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert list(body) == [RECORDS]
    assert len(body[RECORDS]) == 3
    model = record_model(load_spec(service))
    for record in body[RECORDS]:
        model.model_validate_json(json.dumps(record))  # strict JSON validation, as serving


def test_sample_is_deterministic_and_seeded():
    first = sample("--service", "fraud-detection", "--rows", "5", "--seed", "3").stdout
    again = sample("--service", "fraud-detection", "--rows", "5", "--seed", "3").stdout
    other = sample("--service", "fraud-detection", "--rows", "5", "--seed", "4").stdout
    assert first == again
    assert first != other


def test_sample_with_new_categories_shows_them():
    result = sample("-s", "fraud-detection", "--rows", "200", "--drift", "new-categories")
    assert result.exit_code == 0, result.output
    merchants = {r["merchant_category"] for r in json.loads(result.stdout)[RECORDS]}
    assert "crypto_exchange" in merchants


def test_unknown_service_is_a_clean_error():
    result = sample("--service", "no-such-service", "--rows", "3")
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "unknown service 'no-such-service'" in result.stderr
    assert "fraud-detection" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["--service", "fraud-detection", "--rows", "0"],
        ["--service", "fraud-detection", "--drift", "sideways"],
        ["--rows", "3"],
    ],
)
def test_bad_options_are_usage_errors(args):
    result = sample(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_unknown_service_in_a_stage_is_a_clean_error():
    result = runner.invoke(app, ["stage", "prepare", "no-such-service"])
    assert result.exit_code == 1
    assert "unknown service 'no-such-service'" in result.stderr
    assert "Traceback" not in result.output


@pytest.fixture
def other_clusters_untouched(monkeypatch):
    """`stack up` stops HAProxy processes an earlier head left: on this machine they may
    belong to a live cluster of another checkout, so these tests never look for them."""
    from mlops import stack

    monkeypatch.setattr(stack, "_stop_orphaned_haproxy", lambda: None)


@pytest.mark.usefixtures("other_clusters_untouched")
def test_stack_up_names_a_taken_ray_port_instead_of_starting(monkeypatch, tmp_path):
    with socket.socket() as taken, socket.socket() as free:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        free.bind(("127.0.0.1", 0))  # bound, not listening: no dashboard answers there
        port = taken.getsockname()[1]
        monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.invalid:5000")  # not managed
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        monkeypatch.setenv("MLOPS_DASHBOARD_URL", f"http://127.0.0.1:{free.getsockname()[1]}")
        result = runner.invoke(app, ["stack", "up"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"port {port} is taken but no Ray dashboard answers" in result.stderr
    assert "ray stop --force" in result.stderr


def _stack_env(monkeypatch, tmp_path, metrics_port: int) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))  # closed again: nothing answers or listens there
        ray_port, dashboard = free.getsockname()[1], free.getsockname()[1]
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.invalid:5000")  # not managed
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{ray_port}")
    monkeypatch.setenv("MLOPS_DASHBOARD_URL", f"http://127.0.0.1:{dashboard}")
    monkeypatch.setenv("MLOPS_METRICS_PORT", str(metrics_port))


@pytest.mark.usefixtures("other_clusters_untouched")
def test_stack_up_names_a_taken_metrics_port_instead_of_starting(monkeypatch, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        _stack_env(monkeypatch, tmp_path, taken.getsockname()[1])
        result = runner.invoke(app, ["stack", "up"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "(Ray's Prometheus endpoint) is taken" in result.stderr
    assert "MLOPS_METRICS_PORT" in result.stderr


@pytest.mark.usefixtures("other_clusters_untouched")
def test_the_local_head_exports_metrics_on_a_fixed_loopback_port(monkeypatch, tmp_path):
    """Ray binds its Prometheus endpoint to loopback only on a node whose address is 127.0.0.1."""
    from mlops import stack

    started: list[list[str]] = []

    def ray_start(command, **_):
        started.append(command)
        return subprocess.CompletedProcess(command, 1, "", "no Ray here\n")

    _stack_env(monkeypatch, tmp_path, 18080)
    monkeypatch.setattr(stack.subprocess, "run", ray_start)
    result = runner.invoke(app, ["stack", "up"])
    assert result.exit_code == 1 and "no Ray here" in result.stderr
    (command,) = started
    assert "--metrics-export-port=18080" in command
    assert "--node-ip-address=127.0.0.1" in command and "--dashboard-host=127.0.0.1" in command


@pytest.mark.parametrize(("flag", "code"), [([], 0), (["--fail-on-slo"], 1)])
def test_monitor_fails_on_an_slo_breach_only_when_asked(monkeypatch, flag, code):
    """A breach outside the revert window: reported, and the exit status with --fail-on-slo."""
    from dataclasses import replace

    from tests.constructed import result, slow_after_promotion

    late = result(replace(slow_after_promotion(), hours_since_promotion=200.0))
    monkeypatch.setattr("monitoring.monitor.monitor_service", lambda name, options: late)
    outcome = runner.invoke(app, ["monitor", "--service", "fraud-detection", *flag])
    assert outcome.exit_code == code, outcome.output
    assert "Traceback" not in outcome.output and "none" in outcome.stderr
    if code:
        assert "SLO breached: fraud-detection: p99 latency 250.0 ms" in outcome.stderr
