"""Synthetic daily store/item demand with seasonality, promotions and weather."""

from __future__ import annotations

import numpy as np
import pandas as pd

STORES = [f"s{i:02d}" for i in range(1, 11)]
FAMILIES = ["grocery", "dairy", "produce", "beverages", "bakery", "household"]
FAMILY_BASE = {
    "grocery": 60,
    "dairy": 40,
    "produce": 45,
    "beverages": 35,
    "bakery": 25,
    "household": 15,
    "pet_care": 10,
}
FAMILY_PRICE = {
    "grocery": 4,
    "dairy": 2.5,
    "produce": 3,
    "beverages": 2,
    "bakery": 3,
    "household": 8,
    "pet_care": 12,
}


def generate(rows: int, seed: int, drift: str = "none") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    covariate = drift == "covariate"
    store = rng.choice(STORES, rows)
    family = rng.choice(FAMILIES, rows).astype(object)
    if drift == "new-categories":
        family[rng.random(rows) < 0.25] = "pet_care"
    dow = rng.integers(0, 7, rows)
    month = rng.integers(1, 13, rows)
    holiday = rng.random(rows) < 0.04
    promo = rng.random(rows) < (0.45 if covariate else 0.15)
    base_price = np.vectorize(FAMILY_PRICE.get)(family)
    price = (base_price * rng.lognormal(0.4 if covariate else 0.0, 0.2, rows)).clip(0.1, 500)
    discount = np.where(promo, rng.uniform(5, 40, rows), 0.0)
    temperature = 12 + 12 * np.sin((month - 4) / 12 * 2 * np.pi) + rng.normal(0, 4, rows)
    if covariate:
        temperature = temperature + 10

    store_size = 0.6 + 0.1 * np.array([STORES.index(s) if s in STORES else 5 for s in store])
    level = np.vectorize(FAMILY_BASE.get)(family) * store_size
    seasonal = 1 + 0.25 * (dow >= 5) + 0.3 * holiday
    weather = 1 + 0.01 * np.where(family == "beverages", temperature - 12, 0)
    promo_lift = 1 + 0.02 * discount
    price_effect = (base_price / price) ** 0.8
    expected = level * seasonal * weather * promo_lift * price_effect
    history = expected  # what the lag features saw: the world before any concept drift
    if drift == "concept":  # demand collapses and promotions stop working
        expected = level * 0.4 * seasonal / promo_lift
    units = rng.poisson(np.maximum(expected, 0.1)) * rng.lognormal(0, 0.08, rows)
    lag_7 = history * rng.lognormal(0, 0.25, rows)
    rolling = history * rng.lognormal(0, 0.1, rows)

    return pd.DataFrame(
        {
            "store_id": store,
            "item_family": family,
            "day_of_week": dow,
            "month": month,
            "is_holiday": holiday,
            "on_promotion": promo,
            "price": price.round(2),
            "discount_pct": _with_gaps(discount.round(1), 0.03, rng),
            "temperature_c": _with_gaps(temperature.clip(-40, 50).round(1), 0.05, rng),
            "lag_7_units": _with_gaps(lag_7.clip(0, 100000).round(1), 0.05, rng),
            "rolling_28d_mean": rolling.clip(0, 100000).round(2),
            "units_sold": units.round(1),
        }
    )


def _with_gaps(values: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    out = values.astype(float)
    out[rng.random(len(out)) < share] = np.nan
    return out
