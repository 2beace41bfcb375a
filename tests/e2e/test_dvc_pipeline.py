"""The DVC pipeline in a fresh copy of the repository: cold run, no-op rerun, targeted rerun.

The stages run as `dvc repro` runs them (subprocesses calling `mlops stage ...`) and register
into the session's MLflow server.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from mlflow import MlflowClient

from benchmarks.bench_pipeline import UP_TO_DATE
from mlops.sandbox import copy_repo
from services.registry_keys import DVC_DATA_MD5_TAG, GIT_COMMIT_TAG
from services.spec import SPEC_FILE, service_names
from tests.pipeline import Pipeline

pytestmark = pytest.mark.e2e

SERVICES = service_names()
STAGES = ("prepare", "train", "evaluate", "register")


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([\w-]+@[\w-]+)'", output))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, mlflow_server) -> Pipeline:
    root = copy_repo(tmp_path_factory.mktemp("pipeline"))
    return Pipeline(root, mlflow_server)


@pytest.fixture(scope="module")
def cold(pipeline) -> str:
    """`mlops data init` then `dvc repro` with nothing cached."""
    init = pipeline.run("mlops", "data", "init")
    for service in SERVICES:
        assert f"{service}: snapshot generated" in init
    return pipeline.run("dvc", "repro")


@pytest.fixture(scope="module")
def warm(cold, pipeline) -> str:
    return pipeline.run("dvc", "repro")


@pytest.fixture(scope="module")
def fraud_params_changed(warm, pipeline) -> tuple[dict[str, dict[str, str]], str]:
    """Registrations before the change, and the output of `dvc repro` after raising max_depth."""
    before = {service: pipeline.registration(service) for service in SERVICES}
    path = pipeline.root / "services" / "fraud-detection" / SPEC_FILE
    raw = yaml.safe_load(path.read_text())
    raw["model"]["params"]["max_depth"] += 1
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return before, pipeline.run("dvc", "repro")


def test_cold_repro_rebuilds_and_registers_a_version_per_service(cold, pipeline, mlflow_server):
    # evaluate's outputs are committed (metrics, plots): with identical inputs it may be skipped
    every = {f"{stage}@{service}" for stage in STAGES for service in SERVICES}
    rebuilt = {name for name in every if not name.startswith("evaluate@")}
    assert rebuilt <= stages_run(cold) <= every
    client = MlflowClient(mlflow_server)
    git = ["git", "rev-parse", "HEAD"]
    head = subprocess.run(git, cwd=pipeline.root, capture_output=True, text=True, check=True)
    for service in SERVICES:
        record = pipeline.registration(service)
        version = client.get_model_version(service, record["version"])
        assert version.run_id == record["run_id"]
        assert version.tags[GIT_COMMIT_TAG] == head.stdout.strip()
        pointer = (pipeline.root / f"data/{service}/snapshot.parquet.dvc").read_text()
        assert version.tags[DVC_DATA_MD5_TAG] in pointer
        assert (pipeline.root / f"metrics/{service}/metrics.json").exists()
    assert (pipeline.root / "dvc.lock").exists()


def test_second_repro_runs_no_stage(warm):
    assert stages_run(warm) == set()
    assert "Running stage" not in warm
    assert UP_TO_DATE in warm
    for stage in STAGES:
        for service in SERVICES:
            assert f"'{stage}@{service}' didn't change" in warm


def test_metrics_show_lists_both_services(warm, pipeline):
    shown = pipeline.run("dvc", "metrics", "show", "--json")
    metrics = json.loads(shown)[""]["data"]
    fraud = metrics["metrics/fraud-detection/metrics.json"]["data"]
    demand = metrics["metrics/demand-forecast/metrics.json"]["data"]
    assert 0.8 < fraud["roc_auc"] <= 1
    assert 0 < demand["rmse"] < 12
    table = pipeline.run("dvc", "metrics", "show")
    assert "metrics/fraud-detection/metrics.json" in table
    assert "metrics/demand-forecast/metrics.json" in table


def test_changing_fraud_params_reruns_only_fraud_detection(fraud_params_changed, pipeline):
    before, output = fraud_params_changed
    assert stages_run(output) == {
        "train@fraud-detection",
        "evaluate@fraud-detection",
        "register@fraud-detection",
    }
    unchanged = ["prepare@fraud-detection", *(f"{stage}@demand-forecast" for stage in STAGES)]
    for stage in unchanged:
        assert f"'{stage}' didn't change" in output
    after = {service: pipeline.registration(service) for service in SERVICES}
    assert int(after["fraud-detection"]["version"]) > int(before["fraud-detection"]["version"])
    assert after["demand-forecast"] == before["demand-forecast"]
    # and the run after that is a no-op again
    assert stages_run(pipeline.run("dvc", "repro")) == set()
