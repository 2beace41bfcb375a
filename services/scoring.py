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
import xgboost as xgb
import yaml

from services.encoding import FeatureEncoder
from services.inference_log import PREDICTION, PROBABILITY
from services.spec import ServiceSpec, parse_spec


class ScoringModel:
    """XGBoost booster + the spec it was trained on (preprocessing travels with the model)."""

    def __init__(self, spec: ServiceSpec, booster: xgb.Booster) -> None:
        self.spec = spec
        self.booster = booster
        self.encoder = FeatureEncoder(spec)

    @classmethod
    def load(cls, booster_path: Path, spec_path: Path) -> ScoringModel:
        """The model of a booster file and the spec file it was trained with."""
        spec = parse_spec(yaml.safe_load(spec_path.read_text()), str(spec_path))
        booster = xgb.Booster(model_file=str(booster_path))
        booster.set_param({"nthread": 1})  # one core per replica: no oversubscription
        return cls(spec, booster)

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Raw model output (probability for binary, value for regression) per row."""
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
