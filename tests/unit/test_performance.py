"""The metric over bootstrap resamples is live_metrics' figure on each resample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.performance import live_metrics, resampled_metric
from services.inference_log import LABEL, PREDICTION, PROBABILITY
from services.spec import load_spec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("service", ["fraud-detection", "demand-forecast"])
def test_resampled_metrics_equal_live_metrics_of_each_resample(service):
    spec = load_spec(service)
    rng = np.random.default_rng(0)
    n = 300
    if spec.task == "binary":
        y = rng.integers(0, 2, n).astype(float)
        probability = np.round(np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1), 1)  # many ties
        frame = pd.DataFrame(
            {LABEL: y, PROBABILITY: probability, PREDICTION: (probability >= 0.5).astype(int)}
        )
    else:
        y = rng.normal(50, 10, n)
        frame = pd.DataFrame({LABEL: y, PREDICTION: y + rng.normal(0, 5, n)})
    draws = np.vstack([np.arange(n), rng.integers(0, n, (4, n))])
    for metric in live_metrics(spec, frame):
        evaluation = spec.evaluation.model_copy(update={"metric": metric})
        judged = spec.model_copy(update={"evaluation": evaluation})
        expected = [live_metrics(judged, frame.iloc[rows])[metric] for rows in draws]
        assert resampled_metric(judged, frame, draws) == pytest.approx(expected), metric


def test_an_undefined_resample_is_nan():
    spec = load_spec("fraud-detection")
    frame = pd.DataFrame({LABEL: [0.0, 1.0], PROBABILITY: [0.2, 0.8], PREDICTION: [0, 1]})
    values = resampled_metric(spec, frame, np.array([[0, 0], [0, 1]]))
    assert np.isnan(values[0]) and values[1] == 1.0
