"""Synthetic card transactions with a learnable, noisy fraud signal."""

from __future__ import annotations

import numpy as np
import pandas as pd

MERCHANTS = [
    "grocery",
    "restaurants",
    "fuel",
    "travel",
    "electronics",
    "online_retail",
    "gambling",
    "other",
]
MERCHANT_P = [0.28, 0.18, 0.12, 0.07, 0.08, 0.17, 0.03, 0.07]
MERCHANT_RISK = {
    "grocery": -0.6,
    "restaurants": -0.4,
    "fuel": 0.0,
    "travel": 0.5,
    "electronics": 0.9,
    "online_retail": 0.7,
    "gambling": 1.4,
    "other": 0.2,
    "crypto_exchange": 1.6,
}
CHANNELS = ["chip", "contactless", "swipe", "online"]


def generate(rows: int, seed: int, drift: str = "none") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    covariate = drift == "covariate"
    amount = rng.lognormal(3.6 + (0.9 if covariate else 0.0), 1.1, rows).clip(0.5, 50000)
    hour = rng.choice(24, rows, p=_hour_profile(night_heavy=covariate))
    merchant = rng.choice(MERCHANTS, rows, p=MERCHANT_P).astype(object)
    if drift == "new-categories":
        merchant[rng.random(rows) < 0.25] = "crypto_exchange"
    channel_p = [0.15, 0.25, 0.2, 0.4] if covariate else [0.4, 0.3, 0.1, 0.2]
    channel = rng.choice(CHANNELS, rows, p=channel_p)
    country = rng.choice(["low", "medium", "high"], rows, p=[0.8, 0.15, 0.05])
    age = rng.normal(44, 15, rows).clip(18, 100).round()
    account_age = rng.gamma(2.0, 900 if not covariate else 300, rows).clip(0, 30000).round()
    distance = rng.exponential(40 if not covariate else 400, rows).clip(0, 20000)
    txn_24h = rng.poisson(3 if not covariate else 8, rows)
    avg_30d = (amount * rng.lognormal(0, 0.5, rows)).clip(0, 50000)
    is_foreign = rng.random(rows) < np.where(country == "low", 0.05, 0.5)
    card_present = np.isin(channel, ["chip", "contactless", "swipe"]) & (rng.random(rows) < 0.97)

    logit = -4.3 + 1.5 * (
        -2.0
        + 1.6 * np.log1p(amount / np.maximum(avg_30d, 1.0))
        + np.vectorize(MERCHANT_RISK.get)(merchant)
        + 1.3 * (channel == "online")
        + np.select([country == "medium", country == "high"], [0.6, 1.5], 0.0)
        + 0.9 * ((hour <= 4) | (hour >= 23))
        + 1.4 * (account_age < 90)
        + 0.5 * np.log1p(distance) / 3
        + 0.15 * np.minimum(txn_24h, 15)
        + 0.6 * is_foreign
        - 0.7 * card_present
    )
    if drift == "concept":  # the same inputs now mean something else
        logit = -logit - 7.5
    is_fraud = rng.random(rows) < 1 / (1 + np.exp(-(logit + rng.normal(0, 0.3, rows))))

    frame = pd.DataFrame(
        {
            "amount": amount.round(2),
            "hour": hour,
            "day_of_week": rng.integers(0, 7, rows),
            "merchant_category": merchant,
            "channel": channel,
            "country_risk": country,
            "customer_age": _with_gaps(age, 0.04, rng),
            "account_age_days": account_age.astype(int),
            "distance_from_home_km": _with_gaps(distance.round(1), 0.06, rng),
            "txn_count_24h": txn_24h.clip(0, 500),
            "avg_amount_30d": _with_gaps(avg_30d.round(2), 0.03, rng),
            "is_foreign": is_foreign,
            "card_present": card_present,
            "is_fraud": is_fraud.astype(int),
        }
    )
    return frame


def _hour_profile(night_heavy: bool) -> np.ndarray:
    hours = np.arange(24)
    day = np.exp(-((hours - 14) ** 2) / 30) + 0.05
    night = np.exp(-((hours - 2) ** 2) / 6)
    profile = day + (1.5 if night_heavy else 0.1) * night
    return profile / profile.sum()


def _with_gaps(values: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    out = values.astype(float)
    out[rng.random(len(out)) < share] = np.nan
    return out
