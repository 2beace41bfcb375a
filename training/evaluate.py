"""DVC stage `evaluate`: test-split metrics (JSON) and plot data (CSV) per service."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn import metrics as skm

from services.encoding import FeatureEncoder
from services.layout import ServicePaths
from services.spec import ServiceSpec
from training.data import load_split
from training.train import DEFAULT_THREADS

PLOT_POINTS = 2_000


def score(spec: ServiceSpec, y_true: np.ndarray, raw: np.ndarray) -> dict[str, float]:
    """All metrics of the task (binary: probabilities; regression: values)."""
    if spec.task == "binary":
        label = (raw >= spec.evaluation.decision_threshold).astype(int)
        values = {
            "roc_auc": skm.roc_auc_score(y_true, raw),
            "pr_auc": skm.average_precision_score(y_true, raw),
            "f1": skm.f1_score(y_true, label, zero_division=0),
            "accuracy": skm.accuracy_score(y_true, label),
            "log_loss": skm.log_loss(y_true, np.clip(raw, 1e-7, 1 - 1e-7), labels=[0, 1]),
        }
    else:
        values = {
            "rmse": skm.root_mean_squared_error(y_true, raw),
            "mae": skm.mean_absolute_error(y_true, raw),
            "r2": skm.r2_score(y_true, raw),
        }
    return {name: round(float(v), 6) for name, v in values.items()}


def _thin(frame: pd.DataFrame) -> pd.DataFrame:
    step = max(1, len(frame) // PLOT_POINTS)
    return frame.iloc[::step].round(6)


def plot_frames(spec: ServiceSpec, y_true: np.ndarray, raw: np.ndarray) -> dict[str, pd.DataFrame]:
    """ROC and precision-recall curves for binary, residuals for regression."""
    if spec.task == "binary":
        fpr, tpr, _ = skm.roc_curve(y_true, raw)
        precision, recall, _ = skm.precision_recall_curve(y_true, raw)
        return {
            "roc": _thin(pd.DataFrame({"fpr": fpr, "tpr": tpr})),
            "precision_recall": _thin(pd.DataFrame({"recall": recall, "precision": precision})),
        }
    residuals = pd.DataFrame({"actual": y_true, "predicted": raw, "residual": y_true - raw})
    return {"residuals": _thin(residuals)}


def evaluate(spec: ServiceSpec) -> dict[str, float]:
    """Score the trained booster on the test split; write metrics.json and plot CSVs."""
    paths = ServicePaths(spec.name)
    test = load_split(spec, "test")
    booster = xgb.Booster(model_file=str(paths.model))
    booster.set_param({"nthread": DEFAULT_THREADS})
    raw = booster.inplace_predict(FeatureEncoder(spec).encode_frame(test))
    y_true = test[spec.target].to_numpy()
    values = score(spec, y_true, raw)
    paths.metrics.parent.mkdir(parents=True, exist_ok=True)
    paths.metrics.write_text(json.dumps(values, indent=2) + "\n")
    paths.plots.mkdir(parents=True, exist_ok=True)
    for name, frame in plot_frames(spec, y_true, raw).items():
        frame.to_csv(paths.plots / f"{name}.csv", index=False)
    return values
