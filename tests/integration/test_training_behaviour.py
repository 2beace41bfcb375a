"""Behaviour of the registered models (loaded from MLflow as any client would).

Directional expectations (a change in one input moves the output the known way),
invariance (an irrelevant input barely matters) and minimum functionality (obvious cases).
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from services.datagen import generate
from services.inference_log import PREDICTION, PROBABILITY
from services.registry import model_uri
from services.spec import load_spec

pytestmark = pytest.mark.integration

ROWS = 400


@pytest.fixture(scope="module")
def fraud_model(registered, mlflow_server):
    return mlflow.pyfunc.load_model(model_uri("fraud-detection", registered["fraud-detection"]))


@pytest.fixture(scope="module")
def demand_model(registered, mlflow_server):
    return mlflow.pyfunc.load_model(model_uri("demand-forecast", registered["demand-forecast"]))


def base_rows(service: str) -> pd.DataFrame:
    """Ordinary rows (not the training data): the starting point of every perturbation."""
    spec = load_spec(service)
    return generate(spec, ROWS, seed=2024)[spec.feature_names]


def fraud_probability(model, frame: pd.DataFrame) -> np.ndarray:
    output = model.predict(frame)
    assert set(output[PREDICTION]) <= {0, 1}
    probability = output[PROBABILITY].to_numpy()
    assert ((probability >= 0) & (probability <= 1)).all()
    return probability


def demand(model, frame: pd.DataFrame) -> np.ndarray:
    return model.predict(frame)[PREDICTION].to_numpy()


def assert_raises_output(before: np.ndarray, after: np.ndarray, factor: float) -> None:
    """Higher on average by `factor`, and almost never lower for a single row."""
    assert after.mean() > factor * before.mean(), (before.mean(), after.mean())
    lower = after < before - 1e-3 * max(1.0, float(np.abs(before).max()))
    assert lower.mean() < 0.1, f"{lower.mean():.0%} of rows went down"


# --- fraud-detection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "factor"),
    [
        ({"channel": "online", "card_present": False}, 1.5),
        ({"country_risk": "high"}, 1.5),
        ({"account_age_days": 14}, 1.5),
    ],
    ids=["online-channel", "high-risk-country", "new-account"],
)
def test_fraud_risk_factors_raise_the_probability(fraud_model, change, factor):
    rows = base_rows("fraud-detection")
    before = fraud_probability(fraud_model, rows)
    after = fraud_probability(fraud_model, rows.assign(**change))
    assert_raises_output(before, after, factor)


def test_amount_far_above_the_usual_raises_the_probability(fraud_model):
    rows = base_rows("fraud-detection")
    usual = rows["avg_amount_30d"].fillna(rows["amount"]).clip(1, 2_000)
    before = fraud_probability(fraud_model, rows.assign(amount=usual, avg_amount_30d=usual))
    after = fraud_probability(fraud_model, rows.assign(amount=usual * 25, avg_amount_30d=usual))
    assert_raises_output(before, after, 1.5)


def test_day_of_week_barely_matters_for_fraud(fraud_model):
    rows = base_rows("fraud-detection")
    before = fraud_probability(fraud_model, rows)
    for shift in (1, 3, 5):
        after = fraud_probability(
            fraud_model, rows.assign(day_of_week=(rows.day_of_week + shift) % 7)
        )
        assert np.abs(after - before).mean() < 0.01
        assert np.abs(after - before).max() < 0.15


OBVIOUS_FRAUD = {
    "amount": 4_800.0,
    "hour": 3,
    "day_of_week": 2,
    "merchant_category": "gambling",
    "channel": "online",
    "country_risk": "high",
    "customer_age": 30.0,  # a nullable integer: `double` in the MLflow signature
    "account_age_days": 5,
    "distance_from_home_km": 6_000.0,
    "txn_count_24h": 14,
    "avg_amount_30d": 60.0,
    "is_foreign": True,
    "card_present": False,
}
OBVIOUS_LEGIT = {
    "amount": 42.0,
    "hour": 14,
    "day_of_week": 2,
    "merchant_category": "grocery",
    "channel": "chip",
    "country_risk": "low",
    "customer_age": 45.0,
    "account_age_days": 3_000,
    "distance_from_home_km": 3.0,
    "txn_count_24h": 2,
    "avg_amount_30d": 45.0,
    "is_foreign": False,
    "card_present": True,
}


def test_obvious_fraud_and_obvious_legitimate_transactions(fraud_model):
    frame = pd.DataFrame([OBVIOUS_FRAUD, OBVIOUS_LEGIT])
    output = fraud_model.predict(frame)
    assert output[PREDICTION].tolist() == [1, 0]
    fraud, legit = output[PROBABILITY]
    assert fraud > 0.8
    assert legit < 0.02


def test_missing_optional_values_still_score(fraud_model):
    row = OBVIOUS_LEGIT | {"customer_age": None, "distance_from_home_km": None}
    output = fraud_model.predict(pd.DataFrame([row, OBVIOUS_LEGIT]))
    assert output[PREDICTION].tolist() == [0, 0]
    assert np.isfinite(output[PROBABILITY]).all()


# --- demand-forecast --------------------------------------------------------------------------


def test_promotion_raises_demand(demand_model):
    rows = base_rows("demand-forecast")
    before = demand(demand_model, rows.assign(on_promotion=False, discount_pct=0.0))
    after = demand(demand_model, rows.assign(on_promotion=True, discount_pct=30.0))
    assert_raises_output(before, after, 1.1)


def test_higher_recent_sales_raise_demand(demand_model):
    rows = base_rows("demand-forecast")
    before = demand(demand_model, rows)
    doubled = rows.assign(
        rolling_28d_mean=rows.rolling_28d_mean * 2, lag_7_units=rows.lag_7_units * 2
    )
    assert_raises_output(before, demand(demand_model, doubled), 1.3)


def test_demand_forecasts_are_plausible(demand_model):
    rows = base_rows("demand-forecast")
    forecast = demand(demand_model, rows)
    assert np.isfinite(forecast).all()
    assert (forecast > -1).all()  # units sold are never negative
    # close to the recent level of each store/item (the generator's strongest signal)
    ratio = forecast / rows["rolling_28d_mean"].clip(lower=1)
    assert 0.7 < np.median(ratio) < 1.3


def test_quiet_item_vs_busy_item(demand_model):
    quiet = {
        "store_id": "s01",
        "item_family": "household",
        "day_of_week": 2,
        "month": 3,
        "is_holiday": False,
        "on_promotion": False,
        "price": 8.0,
        "discount_pct": 0.0,
        "temperature_c": 10.0,
        "lag_7_units": 9.0,
        "rolling_28d_mean": 9.0,
    }
    busy = quiet | {
        "store_id": "s10",
        "item_family": "grocery",
        "day_of_week": 5,
        "price": 4.0,
        "lag_7_units": 110.0,
        "rolling_28d_mean": 110.0,
    }
    low, high = demand(demand_model, pd.DataFrame([quiet, busy]))
    assert 3 < low < 20
    assert 70 < high < 160
