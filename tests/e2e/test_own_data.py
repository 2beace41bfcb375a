"""A model on a team's own data, in a copy of the repository, as the README's recipe adds it:
a folder with only service.yaml, an entry in params.yaml and a `dvc add`ed snapshot. Then
`mlops data init`, `dvc repro`, promotion (manifest edit, no Ray), traffic from the snapshot
and the monitor work for it with no other step.
"""

from __future__ import annotations

import subprocess

import mlflow
import pytest
from mlflow import MlflowClient

from monitoring.backfill import log_traffic
from services.layout import ServicePaths
from services.spec import load_spec
from serving.manifest import manifest_path, versions
from tests.conftest import copy_repo
from tests.own_data import SERVICE, add_service
from tests.pipeline import Pipeline

pytestmark = pytest.mark.e2e
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, mlflow_server) -> Pipeline:
    """The copy with the new service committed, its snapshot tracked by DVC."""
    root = copy_repo(tmp_path_factory.mktemp("own-data"))
    pipeline = Pipeline(root, mlflow_server)
    snapshot = add_service(root)
    pipeline.run("dvc", "add", str(snapshot.relative_to(root)))
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", f"Add {SERVICE}"], cwd=root, check=True)
    return pipeline


@pytest.fixture(scope="module")
def trained(pipeline) -> dict[str, str]:
    init = pipeline.run("mlops", "data", "init")
    assert f"{SERVICE}: snapshot present" in init
    pipeline.run("dvc", "repro", f"register@{SERVICE}")
    return pipeline.registration(SERVICE)


@pytest.fixture(scope="module")
def promoted(trained, pipeline) -> str:
    version = trained["version"]
    pipeline.run("mlops", "promote", f"{SERVICE}@v{version}", "--no-deploy")
    return version


def test_repro_registers_a_version_with_the_snapshot_lineage(trained, pipeline, mlflow_server):
    version = MlflowClient(mlflow_server).get_model_version(SERVICE, trained["version"])
    assert version.run_id == trained["run_id"]
    assert version.tags["dvc_data_md5"] == ServicePaths(SERVICE, pipeline.root).recorded_md5
    assert float(version.tags["metric.roc_auc"]) > 0.9
    assert "Data and pipelines are up to date" in pipeline.run(
        "dvc", "repro", f"register@{SERVICE}"
    )


def test_promotion_adds_the_application_to_the_manifest(promoted, pipeline, monkeypatch):
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(pipeline.root))
    assert versions(manifest_path())[SERVICE] == promoted
    checked = pipeline.run("mlops", "render", "manifest", "--check")
    assert "matches the catalogue" in " ".join(checked.split())  # rich wraps long lines


def test_drifted_snapshot_traffic_makes_the_monitor_retrain(
    promoted, pipeline, monkeypatch, tmp_path
):
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(pipeline.root))
    log_uri = str(tmp_path / "inference-log")
    predict = mlflow.pyfunc.load_model(f"models:/{SERVICE}/{promoted}").predict
    log_traffic(load_spec(SERVICE), predict, log_uri, promoted, 300, seed=3, drift="covariate")
    pipeline.env["MLOPS_INFERENCE_LOG_URI"] = log_uri
    output = " ".join(pipeline.run("mlops", "monitor", "-s", SERVICE).split())
    assert f"{SERVICE}: production v{promoted} -> retrain" in output
