"""The monitor benchmark runs end to end on a tiny load (the session's MLflow server)."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from benchmarks import bench_monitor
from services.registry import PRODUCTION

pytestmark = pytest.mark.integration
SERVICE = "fraud-detection"


@pytest.fixture
def in_production(registered, mlflow_server):
    client = MlflowClient(mlflow_server)
    saved = client.get_registered_model(SERVICE).aliases.get(PRODUCTION)
    client.set_registered_model_alias(SERVICE, PRODUCTION, registered[SERVICE])
    yield registered[SERVICE]
    if saved is None:
        client.delete_registered_model_alias(SERVICE, PRODUCTION)
    else:
        client.set_registered_model_alias(SERVICE, PRODUCTION, saved)


def test_bench_prints_time_and_peak_memory(in_production, mlflow_server, capsys):
    args = ["--rows", "1500", "--tracking-uri", mlflow_server, "--json"]
    assert bench_monitor.main(args) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["rows"] == 1500
    assert figures["decision"] == "none"  # healthy generated traffic on the trained model
    assert 0 < figures["monitor_s"] <= figures["child_total_s"]
    assert 100 < figures["peak_rss_mib"] < 4096
    assert 0 <= figures["feature_drift_share"] < 0.3
