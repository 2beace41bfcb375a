"""Labelled performance of a version on live traffic (rows with feedback), and the same
metric over bootstrap resamples (the rollout's quality gate)."""

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


def _outputs(spec: ServiceSpec, labelled: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray]:
    """Binary: the probability (None when not logged) and the class it decides."""
    if PROBABILITY not in labelled:
        return None, pd.to_numeric(labelled[PREDICTION], errors="coerce").to_numpy().astype(int)
    score = pd.to_numeric(labelled[PROBABILITY], errors="coerce").to_numpy(dtype=float)
    return score, (score >= spec.evaluation.decision_threshold).astype(int)


def _binary(spec: ServiceSpec, y_true: np.ndarray, labelled: pd.DataFrame) -> dict[str, float]:
    score, predicted = _outputs(spec, labelled)
    values = {"f1": float(skm.f1_score(y_true, predicted, zero_division=0))}
    if score is not None and len(np.unique(y_true)) == 2:
        values["roc_auc"] = float(skm.roc_auc_score(y_true, score))
        values["pr_auc"] = float(skm.average_precision_score(y_true, score))
    elif score is not None:
        log.info("%s: labels hold a single class; ROC AUC is not defined", spec.name)
    return values


def resampled_metric(
    spec: ServiceSpec, labelled: pd.DataFrame, indices: np.ndarray, label: str = LABEL
) -> np.ndarray:
    """`spec.evaluation.metric` of every resample of `labelled` (row i of `indices` holds the
    row positions of resample i): live_metrics' figure, vectorised for the bootstrap; NaN
    where it is undefined (a single class, no probability logged).

    Each resample is weighted by how often it drew each row, so no resample is sorted: ties
    and orders come from the sample once.
    """
    count, n = indices.shape[0], len(labelled)
    offsets = (indices + n * np.arange(count)[:, None]).ravel()
    weights = np.bincount(offsets, minlength=count * n).reshape(count, n).astype(float)
    y_true = pd.to_numeric(labelled[label], errors="coerce").to_numpy(dtype=float)
    metric = spec.evaluation.metric
    if spec.task != "binary":
        predicted = pd.to_numeric(labelled[PREDICTION], errors="coerce").to_numpy(dtype=float)
        return _REGRESSION[metric](weights, y_true, predicted)
    score, decided = _outputs(spec, labelled)
    if metric == "f1":
        return _f1(weights, y_true, decided)
    if score is None:
        return np.full(count, np.nan)
    return (_roc_auc if metric == "roc_auc" else _average_precision)(weights, y_true, score)


def _ratio(top: np.ndarray, bottom: np.ndarray, otherwise: float = np.nan) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / bottom, otherwise)


def _f1(weights: np.ndarray, y_true: np.ndarray, decided: np.ndarray) -> np.ndarray:
    hits = weights @ (y_true * decided)
    wrong = weights @ (y_true != decided).astype(float)  # false positives + false negatives
    return _ratio(2 * hits, 2 * hits + wrong, otherwise=0.0)  # sklearn's zero_division=0


def _by_score(
    weights: np.ndarray, y_true: np.ndarray, score: np.ndarray, descending: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Drawn positives and negatives per distinct score, in score order (one column each)."""
    order = np.argsort(-score if descending else score)  # ties are summed: any order
    ranked = score[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    drawn, truth = weights[:, order], y_true[order]
    positives = np.add.reduceat(drawn * truth, starts, axis=1)
    return positives, np.add.reduceat(drawn * (1 - truth), starts, axis=1)


def _roc_auc(weights: np.ndarray, y_true: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The share of (positive, negative) pairs ranked right, ties counting half (as sklearn)."""
    positives, negatives = _by_score(weights, y_true, score, descending=False)
    below = np.cumsum(negatives, axis=1) - negatives
    right = (positives * (below + negatives / 2)).sum(axis=1)
    return _ratio(right, positives.sum(axis=1) * negatives.sum(axis=1))


def _average_precision(weights: np.ndarray, y_true: np.ndarray, score: np.ndarray) -> np.ndarray:
    """sklearn's average precision: each positive adds its share of recall times the precision
    at its score's threshold (all rows scoring at least as high)."""
    positives, negatives = _by_score(weights, y_true, score, descending=True)
    hits = np.cumsum(positives, axis=1)
    precision = _ratio(hits, hits + np.cumsum(negatives, axis=1), otherwise=0.0)
    return _ratio((positives * precision).sum(axis=1), positives.sum(axis=1))


def _squares(weights: np.ndarray, y_true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    return weights @ (y_true - predicted) ** 2


def _r2(weights: np.ndarray, y_true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    mean = (weights @ y_true) / weights.sum(axis=1)
    total = (weights * (y_true[None, :] - mean[:, None]) ** 2).sum(axis=1)
    return 1 - _ratio(_squares(weights, y_true, predicted), total)


_REGRESSION = {
    "rmse": lambda w, y, p: np.sqrt(_squares(w, y, p) / w.sum(axis=1)),
    "mae": lambda w, y, p: (w @ np.abs(y - p)) / w.sum(axis=1),
    "r2": _r2,
}
