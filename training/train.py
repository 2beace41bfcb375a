"""DVC stage `train`: fit XGBoost with the spec's params on the prepared split."""

from __future__ import annotations

import pandas as pd
import xgboost as xgb

from services.encoding import FeatureEncoder
from services.layout import ServicePaths
from services.spec import ServiceSpec
from training.data import load_split

# One thread unless the spec's model params say otherwise: on shared cores (CI runners, a
# laptop also running Ray) OpenMP threads spin-wait on each other and a small training run
# gets many times slower; the trees are the same with any thread count.
DEFAULT_THREADS = 1


def dmatrix(spec: ServiceSpec, split: str) -> xgb.DMatrix:
    """A split as an XGBoost matrix with categorical columns marked."""
    return frame_matrix(spec, load_split(spec, split))


def frame_matrix(spec: ServiceSpec, frame: pd.DataFrame) -> xgb.DMatrix:
    """Rows with the spec's features and target as an XGBoost matrix (categoricals marked)."""
    encoder = FeatureEncoder(spec)
    return xgb.DMatrix(
        encoder.encode_frame(frame),
        label=frame[spec.target].to_numpy(),
        feature_names=encoder.names,
        feature_types=encoder.feature_types,
        enable_categorical=True,
    )


def train(spec: ServiceSpec) -> dict[str, int]:
    """Train with early stopping on the validation split; write the booster file."""
    train_set, valid_set = dmatrix(spec, "train"), dmatrix(spec, "valid")
    booster = xgb.train(
        {"nthread": DEFAULT_THREADS} | spec.model.params,
        train_set,
        num_boost_round=spec.model.num_boost_round,
        evals=[(valid_set, "valid")],
        early_stopping_rounds=spec.model.early_stopping_rounds,
        verbose_eval=False,
    )
    best = booster.best_iteration + 1
    booster = booster[:best]  # keep only the trees that helped on validation
    path = ServicePaths(spec.name).model
    path.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(path)
    return {"trees": best}
