"""Registration against a real MLflow server: versions, lineage tags, reference sample,
signature, the floor, and a registry that is down."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from mlops.cli import app
from mlops.sandbox import free_port
from services.encoding import FeatureEncoder
from services.inference_log import PREDICTION, PROBABILITY
from services.model import signature_from_spec
from services.onnx_scoring import TOLERANCE, onnx_predictor
from services.registry import download_model_artifacts, model_uri
from services.registry_keys import (
    DVC_DATA_MD5_TAG,
    GIT_COMMIT_TAG,
    ONNX_ARTIFACT,
    ONNX_CHECK_TAG,
    PARAMS_HASH_TAG,
    REFERENCE_ARTIFACT,
    metric_tag,
)
from services.spec import SPEC_FILE, load_spec
from training.params import load_params

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("service", ["fraud-detection", "demand-forecast"])
def test_registered_version_carries_lineage(registered, mlflow_server, service, repo):
    client = MlflowClient(mlflow_server)
    version = client.get_model_version(service, registered[service])
    tags = version.tags
    pointer = (repo / f"data/{service}/snapshot.parquet.dvc").read_text()
    assert tags[DVC_DATA_MD5_TAG] in pointer
    assert len(tags[GIT_COMMIT_TAG]) == 40
    assert len(tags[PARAMS_HASH_TAG]) == 16
    metric = load_spec(service).evaluation.metric
    metrics = json.loads((repo / f"metrics/{service}/metrics.json").read_text())
    assert float(tags[metric_tag(metric)]) == pytest.approx(metrics[metric])


@pytest.mark.parametrize("service", ["fraud-detection", "demand-forecast"])
def test_reference_sample_has_features_target_and_predictions(registered, mlflow_server, service):
    spec = load_spec(service)
    version = MlflowClient(mlflow_server).get_model_version(service, registered[service])
    path = mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path=REFERENCE_ARTIFACT, tracking_uri=mlflow_server
    )
    reference = pd.read_parquet(path)
    assert len(reference) == 5000
    assert {*spec.feature_names, spec.target, PREDICTION} <= set(reference.columns)


# --- signature, floor refusal, registry down ---------------------------------------------------

SERVICES = ["fraud-detection", "demand-forecast"]


def version_numbers(client: MlflowClient, service: str) -> set[str]:
    return {v.version for v in client.search_model_versions(f"name = '{service}'")}


@contextlib.contextmanager
def edited_spec(repo: Path, service: str, edit: Callable[[dict], None]) -> Iterator[None]:
    """Edit the copy's service.yaml (the catalogue follows MLOPS_REPO_ROOT), then restore it."""
    path = repo / "services" / service / SPEC_FILE
    original = path.read_text()
    raw = yaml.safe_load(original)
    edit(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        yield
    finally:
        path.write_text(original)


@pytest.mark.parametrize("service", SERVICES)
def test_registered_signature_is_the_specs(registered, mlflow_server, service):
    info = mlflow.models.get_model_info(model_uri(service, registered[service]))
    expected = signature_from_spec(load_spec(service))
    assert info.signature is not None
    assert info.signature.to_dict() == expected.to_dict()
    inputs = info.signature.inputs.input_names()
    assert inputs == load_spec(service).feature_names


@pytest.mark.parametrize("service", SERVICES)
def test_registered_model_reproduces_the_evaluated_metric(registered, mlflow_server, service):
    """The artifact in the registry is the model `evaluate` scored (same test metric)."""
    from training.data import load_split
    from training.evaluate import score

    spec = load_spec(service)
    model = mlflow.pyfunc.load_model(model_uri(service, registered[service]))
    test = load_split(spec, "test")
    output = model.predict(test[spec.feature_names])
    raw = output[PROBABILITY if spec.task == "binary" else PREDICTION].to_numpy()
    values = score(spec, test[spec.target].to_numpy(), raw)
    tags = MlflowClient(mlflow_server).get_model_version(service, registered[service]).tags
    metric = spec.evaluation.metric
    assert values[metric] == pytest.approx(float(tags[metric_tag(metric)]), abs=1e-6)


@pytest.mark.parametrize(
    ("service", "kept"), [("fraud-detection", True), ("demand-forecast", False)]
)
def test_the_onnx_conversion_is_registered_only_within_the_tolerance(
    registered, mlflow_server, service, kept, tmp_path
):
    """fraud-detection's probabilities convert within 1e-6; demand-forecast's values (tens of
    units, float32 sums of its trees) do not, so its versions are scored by XGBoost."""
    from training.data import load_split

    version = registered[service]
    verdict = MlflowClient(mlflow_server).get_model_version(service, version).tags[ONNX_CHECK_TAG]
    files = download_model_artifacts(service, version, (ONNX_ARTIFACT,), tmp_path)
    assert (ONNX_ARTIFACT in files, verdict.startswith("kept")) == (kept, kept), verdict
    if kept:
        spec = load_spec(service)
        test = load_split(spec, "test")
        pyfunc = mlflow.pyfunc.load_model(model_uri(service, version))
        expected = pyfunc.predict(test[spec.feature_names])[PROBABILITY].to_numpy()
        converted = onnx_predictor((tmp_path / files[ONNX_ARTIFACT]).read_bytes())
        matrix = FeatureEncoder(spec).encode_frame(test)  # as replicas encode
        assert converted(matrix) == pytest.approx(expected, abs=TOLERANCE)


@pytest.mark.parametrize(
    ("service", "floor", "side"),
    [("fraud-detection", 0.999, "below"), ("demand-forecast", 0.5, "above")],
)
def test_model_below_the_floor_is_not_registered(
    registered, mlflow_server, repo, service, floor, side
):
    from training.register import FloorNotMet, register

    client = MlflowClient(mlflow_server)
    before = version_numbers(client, service)
    registration = (repo / f"models/{service}/registration.json").read_text()
    with edited_spec(repo, service, lambda raw: raw["evaluation"].update(floor=floor)):
        spec = load_spec(service)
        assert spec.evaluation.floor == floor
        with pytest.raises(FloorNotMet) as caught:
            register(spec)
        result = CliRunner().invoke(app, ["stage", "register", service])
    message = str(caught.value)
    metric = spec.evaluation.metric
    assert f"{metric} " in message
    assert f"{side} the floor {floor}" in message
    assert f"services/{service}/{SPEC_FILE}" in message
    assert "not registered" in message
    assert result.exit_code == 1
    cli_message = " ".join(result.stderr.split())
    assert f"{side} the floor {floor}" in cli_message
    assert "Traceback" not in result.output
    assert version_numbers(client, service) == before  # no new version
    assert (repo / f"models/{service}/registration.json").read_text() == registration
    assert load_spec(service).evaluation.floor != floor  # restored


def test_register_against_a_stack_that_is_down_says_how_to_start_it(repo):
    closed = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        app, ["stage", "register", "fraud-detection"], env={"MLFLOW_TRACKING_URI": closed}
    )
    assert result.exit_code != 0
    message = " ".join(result.stderr.split())
    assert closed in message
    assert "`mlops stack up`" in message
    assert "Traceback" not in result.output


def test_register_stage_declares_exactly_the_params_it_reads(registered, mlflow_server, repo):
    """What `register` reads of each spec and params.yaml is declared in dvc.yaml.

    Registers one more version per service through a recording proxy, then deletes it.
    """
    import training.register as register_module
    from tests.unit.test_params import Reads, declared_params

    client = MlflowClient(mlflow_server)
    sections, pipeline = declared_params("register")
    read_sections: set[str] = set()
    read_pipeline: set[str] = set()
    for service in SERVICES:
        registration = repo / f"models/{service}/registration.json"
        saved = registration.read_text()
        spec_reads: set[str] = set()
        params_reads: set[str] = set()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(
                register_module,
                "load_params",
                lambda s, seen=params_reads: Reads(load_params(s), seen),
            )
            record = register_module.register(Reads(load_spec(service), spec_reads))  # type: ignore[arg-type]
        client.delete_model_version(service, record["version"])
        registration.write_text(saved)
        assert spec_reads <= sections, service
        assert params_reads <= pipeline, service
        read_sections |= spec_reads
        read_pipeline |= params_reads
    assert (read_sections, read_pipeline) == (sections, pipeline)
