"""A version's model without MLflow: its spec, XGBoost booster and feature encoder.

Serving and batch scoring load it from the version's two artifacts (services/model_cache.py);
the pyfunc MLflow stores (services/model.py) wraps it for MLflow's clients, so both predict
with the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from services.encoding import FeatureEncoder
from services.inference_log import PREDICTION, PROBABILITY
from services.lean_xgboost import xgb
from services.onnx_scoring import SMALL_CALL_ROWS, Predict, onnx_predictor
from services.settings import ServingRuntime
from services.spec import ServiceSpec, parse_spec


class ScoringModel:
    """XGBoost booster + the spec it was trained on (preprocessing travels with the model),
    and optionally the booster's checked ONNX conversion for small calls."""

    def __init__(
        self, spec: ServiceSpec, booster: xgb.Booster, small_calls: Predict | None = None
    ) -> None:
        self.spec = spec
        self.booster = booster
        self.encoder = FeatureEncoder(spec)
        self.small_calls = small_calls  # scores calls of up to SMALL_CALL_ROWS rows

    @classmethod
    def load(
        cls, booster_path: Path, spec_path: Path, onnx_path: Path | None = None
    ) -> ScoringModel:
        """The model of a booster file and the spec file it was trained with; with the ONNX
        file of the booster's checked conversion, small calls are scored by ONNX Runtime."""
        spec = parse_spec(yaml.safe_load(spec_path.read_text()), str(spec_path))
        booster = xgb.Booster(model_file=str(booster_path))
        booster.set_param({"nthread": 1})  # one core per replica: no oversubscription
        small_calls = None if onnx_path is None else onnx_predictor(onnx_path.read_bytes())
        return cls(spec, booster, small_calls)

    @property
    def runtime(self) -> ServingRuntime:
        """What scores a single record: `onnx` or `xgboost`."""
        return "xgboost" if self.small_calls is None else "onnx"

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Raw model output (probability for binary, value for regression) per row."""
        if self.small_calls is not None and len(matrix) <= SMALL_CALL_ROWS:
            return self.small_calls(matrix)
        return self.booster.inplace_predict(matrix)

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Raw model output of validated records (dicts)."""
        return self.predict_matrix(self.encoder.encode_records(records))

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The prediction columns of a frame holding (at least) the feature columns."""
        return prediction_frame(self.spec, self.predict_matrix(self.encoder.encode_frame(frame)))


def prediction_frame(spec: ServiceSpec, raw: np.ndarray) -> pd.DataFrame:
    """Model output as columns: `prediction` (class or value) and, for binary, `probability`."""
    if spec.task == "binary":
        label = (raw >= spec.evaluation.decision_threshold).astype(int)
        return pd.DataFrame({PREDICTION: label, PROBABILITY: raw.astype(float)})
    return pd.DataFrame({PREDICTION: raw.astype(float)})
