"""Registration against a real MLflow server: versions, lineage tags, reference sample."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from services.registry import REFERENCE_ARTIFACT
from services.spec import load_spec

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("service", ["fraud-detection", "demand-forecast"])
def test_registered_version_carries_lineage(registered, mlflow_server, service, repo):
    client = MlflowClient(mlflow_server)
    version = client.get_model_version(service, registered[service])
    tags = version.tags
    pointer = (repo / f"data/{service}/snapshot.parquet.dvc").read_text()
    assert tags["dvc_data_md5"] in pointer
    assert len(tags["git_commit"]) == 40
    assert len(tags["params_hash"]) == 16
    metric = load_spec(service).evaluation.metric
    metrics = json.loads((repo / f"metrics/{service}/metrics.json").read_text())
    assert float(tags[f"metric.{metric}"]) == pytest.approx(metrics[metric])


@pytest.mark.parametrize("service", ["fraud-detection", "demand-forecast"])
def test_reference_sample_has_features_target_and_predictions(registered, mlflow_server, service):
    spec = load_spec(service)
    version = MlflowClient(mlflow_server).get_model_version(service, registered[service])
    path = mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path=REFERENCE_ARTIFACT, tracking_uri=mlflow_server
    )
    reference = pd.read_parquet(path)
    assert len(reference) == 5000
    assert {*spec.feature_names, spec.target, "prediction"} <= set(reference.columns)
