"""The model as MLflow stores it: a pyfunc wrapping an XGBoost booster and its spec.

Serving unwraps it to call the booster directly (the fast path); `mlflow models serve`
and any MLflow client use `predict` on raw feature records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import xgboost as xgb
import yaml

from services.encoding import FeatureEncoder
from services.inference_log import PREDICTION, PROBABILITY
from services.registry import model_uri
from services.registry_keys import BOOSTER_ARTIFACT, SPEC_ARTIFACT
from services.settings import get_settings
from services.spec import ServiceSpec, parse_spec


class ServiceModel(mlflow.pyfunc.PythonModel):
    """XGBoost booster + the spec it was trained on (preprocessing travels with the model)."""

    spec: ServiceSpec
    booster: xgb.Booster
    encoder: FeatureEncoder

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.load(Path(context.artifacts[BOOSTER_ARTIFACT]), Path(context.artifacts[SPEC_ARTIFACT]))

    def load(self, booster_path: Path, spec_path: Path) -> ServiceModel:
        self.spec = parse_spec(yaml.safe_load(spec_path.read_text()), str(spec_path))
        self.booster = xgb.Booster(model_file=str(booster_path))
        self.booster.set_param({"nthread": 1})  # one core per replica: no oversubscription
        self.encoder = FeatureEncoder(self.spec)
        return self

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Raw model output (probability for binary, value for regression) per row."""
        return self.booster.inplace_predict(matrix)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return prediction_frame(
            self.spec, self.predict_matrix(self.encoder.encode_frame(model_input))
        )


def load_registered(service: str, version: str) -> ServiceModel:
    """Version `version` of registered model `service`, with the spec it was trained with."""
    mlflow.set_tracking_uri(get_settings().tracking_uri)
    model = mlflow.pyfunc.load_model(model_uri(service, version)).unwrap_python_model()
    if not isinstance(model, ServiceModel):
        raise TypeError(f"{service} v{version} is not a ServiceModel ({type(model).__name__})")
    return model


def prediction_frame(spec: ServiceSpec, raw: np.ndarray) -> pd.DataFrame:
    """Model output as columns: `prediction` (class or value) and, for binary, `probability`."""
    if spec.task == "binary":
        label = (raw >= spec.evaluation.decision_threshold).astype(int)
        return pd.DataFrame({PREDICTION: label, PROBABILITY: raw.astype(float)})
    return pd.DataFrame({PREDICTION: raw.astype(float)})


_SIGNATURE_TYPES = {
    "numeric": "double",
    "integer": "long",
    "categorical": "string",
    "boolean": "boolean",
}


def signature_from_spec(spec: ServiceSpec) -> Any:
    """The MLflow signature a model of this spec must carry (inputs and outputs).

    Nullable integers are `double`: pandas stores an integer column with gaps as floats.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema(
        [
            ColSpec(
                "double" if f.nullable and f.type == "integer" else _SIGNATURE_TYPES[f.type],
                f.name,
                required=not f.nullable,
            )
            for f in spec.features
        ]
    )
    outputs = [ColSpec("long" if spec.task == "binary" else "double", PREDICTION)]
    if spec.task == "binary":
        outputs.append(ColSpec("double", PROBABILITY))
    return ModelSignature(inputs=inputs, outputs=Schema(outputs))
