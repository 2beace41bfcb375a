"""DVC stage `register`: log the model to MLflow and register a new version with lineage."""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
from importlib.metadata import version as installed_version
from pathlib import Path

import mlflow
import pandas as pd
import xgboost as xgb

from services.layout import ServicePaths
from services.model import ServiceModel, signature_from_spec
from services.onnx_scoring import check_conversion
from services.registry import connect
from services.registry_keys import (
    BOOSTER_ARTIFACT,
    DVC_DATA_MD5_TAG,
    EVALUATION_METRIC_TAG,
    GIT_COMMIT_TAG,
    MODEL_ARTIFACT,
    ONNX_ARTIFACT,
    ONNX_CHECK_TAG,
    PARAMS_HASH_TAG,
    REFERENCE_ARTIFACT,
    SPEC_ARTIFACT,
    metric_tag,
)
from services.scoring import ScoringModel
from services.settings import repo_root
from services.spec import SPEC_FILE, ServiceSpec
from training.data import load_split
from training.params import load_params, params_hash

log = logging.getLogger(__name__)
RUNTIME_PACKAGES = ("mlflow", "xgboost", "pandas", "numpy", "pyyaml", "pydantic")


class FloorNotMet(RuntimeError):
    """The evaluated model is worse than the floor in its spec."""


def check_floor(spec: ServiceSpec, metrics: dict[str, float]) -> None:
    metric, floor = spec.evaluation.metric, spec.evaluation.floor
    value = metrics[metric]
    if not spec.evaluation.meets(value, floor):
        side = "below" if spec.evaluation.higher_is_better else "above"
        raise FloorNotMet(
            f"{spec.name}: {metric} {value:.4f} is {side} the floor {floor} set in "
            f"services/{spec.name}/{SPEC_FILE} (evaluation.floor); the model is not registered"
        )


def git_commit() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def reference_sample(spec: ServiceSpec, model: ScoringModel, rows: int) -> pd.DataFrame:
    """Training rows + the model's predictions: the baseline monitoring compares live data with."""
    train = load_split(spec, "train")
    sample = train.sample(n=min(rows, len(train)), random_state=0).reset_index(drop=True)
    return pd.concat([sample, model.predict_frame(sample)], axis=1)


def lineage_tags(spec: ServiceSpec, metrics: dict[str, float]) -> dict[str, str]:
    paths = ServicePaths(spec.name)
    tags = {
        GIT_COMMIT_TAG: git_commit(),
        DVC_DATA_MD5_TAG: paths.recorded_md5 or "untracked",
        PARAMS_HASH_TAG: params_hash(spec, load_params(spec.name)),
        EVALUATION_METRIC_TAG: spec.evaluation.metric,
    }
    tags |= {metric_tag(name): str(value) for name, value in metrics.items()}
    return tags


def register(spec: ServiceSpec) -> dict[str, str]:
    """Log booster + spec (+ the booster's ONNX conversion when it passes its check) as a
    pyfunc model, register version N of model `<service>`."""
    paths = ServicePaths(spec.name)
    metrics = json.loads(paths.metrics.read_text())
    check_floor(spec, metrics)
    client = connect()
    mlflow.set_experiment(spec.name)
    spec_path = spec.folder / SPEC_FILE
    model = ScoringModel.load(paths.model, spec_path)
    test = load_split(spec, "test")
    conversion = check_conversion(model.booster, model.encoder.encode_frame(test))
    log.info("%s: ONNX conversion %s", spec.name, conversion.verdict)
    tags = lineage_tags(spec, metrics) | {ONNX_CHECK_TAG: conversion.verdict}
    with (
        mlflow.start_run(run_name=f"train-{tags[GIT_COMMIT_TAG][:8]}") as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        mlflow.set_tags(tags)
        mlflow.log_params(
            {f"model.{k}": v for k, v in spec.model.params.items()}
            | {"num_boost_round": spec.model.num_boost_round}
        )
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(str(paths.plots), artifact_path="plots")
        reference = Path(tmp) / Path(REFERENCE_ARTIFACT).name
        reference_sample(spec, model, load_params(spec.name).reference_rows).to_parquet(reference)
        mlflow.log_artifact(str(reference), artifact_path=str(Path(REFERENCE_ARTIFACT).parent))
        artifacts = {BOOSTER_ARTIFACT: str(paths.model), SPEC_ARTIFACT: str(spec_path)}
        if conversion.model is not None:
            onnx = Path(tmp) / "model.onnx"
            onnx.write_bytes(conversion.model)
            artifacts[ONNX_ARTIFACT] = str(onnx)
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=ServiceModel(),
            artifacts=artifacts,
            signature=signature_from_spec(spec),
            input_example=test[spec.feature_names].head(3),
            pip_requirements=[f"{p}=={installed_version(p)}" for p in RUNTIME_PACKAGES],
            registered_model_name=spec.name,
        )
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(spec.name, version, key, value)
    record = {
        "service": spec.name,
        "version": version,
        "run_id": run.info.run_id,
        "booster_trees": str(xgb.Booster(model_file=str(paths.model)).num_boosted_rounds()),
    }
    paths.registration.write_text(json.dumps(record, indent=2) + "\n")
    log.info("registered %s version %s", spec.name, version)
    return record
