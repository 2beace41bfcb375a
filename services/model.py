"""The model as MLflow stores it: a pyfunc wrapping a version's `ScoringModel`.

`mlflow models serve` and any MLflow client call `predict` on raw feature records; serving and
batch scoring load the `ScoringModel` from the version's artifacts without MLflow
(services/model_cache.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from services.inference_log import PREDICTION, PROBABILITY
from services.registry_keys import BOOSTER_ARTIFACT, SPEC_ARTIFACT
from services.scoring import ScoringModel
from services.spec import ServiceSpec


class ServiceModel(mlflow.pyfunc.PythonModel):
    """The pyfunc of a registered version: its artifacts are the booster and the spec file."""

    model: ScoringModel

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        artifacts = context.artifacts
        self.model = ScoringModel.load(
            Path(artifacts[BOOSTER_ARTIFACT]), Path(artifacts[SPEC_ARTIFACT])
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return self.model.predict_frame(model_input)


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
