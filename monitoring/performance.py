"""Labelled performance of the production version on live traffic (rows with feedback)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from services.inference_log import LABEL, PREDICTION, PROBABILITY
from services.spec import ServiceSpec

log = logging.getLogger(__name__)


def live_metrics(spec: ServiceSpec, labelled: pd.DataFrame, label: str = LABEL) -> dict[str, float]:
    """Binary: roc_auc, pr_auc, f1 (probability + predicted class); regression: rmse, mae, r2.

    Metrics that cannot be computed (no rows, a single class) are left out.
    """
    if labelled.empty:
        return {}
    y_true = pd.to_numeric(labelled[label], errors="coerce").to_numpy()
    if spec.task == "binary":
        return _binary(spec, y_true.astype(int), labelled)
    predicted = pd.to_numeric(labelled[PREDICTION], errors="coerce").to_numpy(dtype=float)
    values = {
        "rmse": float(skm.root_mean_squared_error(y_true, predicted)),
        "mae": float(skm.mean_absolute_error(y_true, predicted)),
    }
    if len(y_true) > 1:
        values["r2"] = float(skm.r2_score(y_true, predicted))
    return values


def _binary(spec: ServiceSpec, y_true: np.ndarray, labelled: pd.DataFrame) -> dict[str, float]:
    if PROBABILITY in labelled:
        score = pd.to_numeric(labelled[PROBABILITY], errors="coerce").to_numpy(dtype=float)
        predicted = (score >= spec.evaluation.decision_threshold).astype(int)
    else:
        score = None
        predicted = pd.to_numeric(labelled[PREDICTION], errors="coerce").to_numpy().astype(int)
    values = {"f1": float(skm.f1_score(y_true, predicted, zero_division=0))}
    if score is not None and len(np.unique(y_true)) == 2:
        values["roc_auc"] = float(skm.roc_auc_score(y_true, score))
        values["pr_auc"] = float(skm.average_precision_score(y_true, score))
    elif score is not None:
        log.info("%s: labels hold a single class; ROC AUC is not defined", spec.name)
    return values
