"""Rows that stand for live traffic: from the service's generator, else from its snapshot.

A service with `generate.py` gets generated rows (its drift knobs included). A service that
brings its own data gets rows sampled from its DVC snapshot, with drift applied to them:
`covariate` shifts numeric features by one standard deviation (within the spec's range) and
draws categories uniformly, `new-categories` puts values outside the spec into categorical
features, `concept` shuffles the target so that the same inputs no longer predict it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from services.datagen import GENERATOR_FILE, Drift, check_drift, generate, has_generator
from services.layout import ServicePaths
from services.spec import Feature, ServiceSpec

NEW_CATEGORY_SHARE = 0.25
NEW_CATEGORY = "unseen"


class TrafficError(ValueError):
    """Rows that cannot be made for a service; the message says why and what to run."""


def traffic_rows(spec: ServiceSpec, rows: int, seed: int, drift: Drift = "none") -> pd.DataFrame:
    """`rows` rows of features + target, the same for the same (snapshot, rows, seed, drift)."""
    if has_generator(spec):
        return generate(spec, rows, seed, drift)
    check_drift(drift)
    rng = np.random.default_rng(seed)
    data = read_snapshot(spec)
    picked = rng.choice(len(data), size=rows, replace=rows > len(data))
    return apply_drift(spec, data.iloc[picked].reset_index(drop=True), drift, rng)


def read_snapshot(spec: ServiceSpec) -> pd.DataFrame:
    """The service's snapshot: its features then its target (a one-line error when absent)."""
    paths = ServicePaths(spec.name)
    snapshot = paths.snapshot.relative_to(paths.root)
    if not paths.snapshot.exists():
        raise TrafficError(
            f"{snapshot}: not found (services/{spec.name} has no {GENERATOR_FILE}, so its rows "
            "come from the snapshot): run `mlops data init` or `dvc pull` first"
        )
    frame = pd.read_parquet(paths.snapshot)
    columns = [*spec.feature_names, spec.target]
    missing = [name for name in columns if name not in frame.columns]
    if missing or frame.empty:
        problem = f"lacks columns {missing}" if missing else "has no rows"
        raise TrafficError(f"{snapshot}: {problem} (services/{spec.name}/service.yaml)")
    return frame[columns]


def apply_drift(
    spec: ServiceSpec, frame: pd.DataFrame, drift: Drift, rng: np.random.Generator
) -> pd.DataFrame:
    """`frame` with the drift applied (a copy); drift a spec cannot show is refused."""
    out = frame.copy()
    if drift == "concept":
        out[spec.target] = rng.permutation(out[spec.target].to_numpy())
    elif drift == "covariate":
        changed = [f for f in spec.features if f.type != "boolean"]
        _require(changed, spec, drift, "a numeric, integer or categorical feature")
        for feature in changed:
            out[feature.name] = _shifted(feature, out[feature.name], rng)
    elif drift == "new-categories":
        categorical = [f for f in spec.features if f.type == "categorical"]
        _require(categorical, spec, drift, "a categorical feature")
        for feature in categorical:
            unseen = rng.random(len(out)) < NEW_CATEGORY_SHARE
            out[feature.name] = out[feature.name].astype(object).where(~unseen, NEW_CATEGORY)
    return out


def _require(features: list[Feature], spec: ServiceSpec, drift: str, needs: str) -> None:
    if not features:
        raise TrafficError(
            f"drift '{drift}' needs {needs} and {spec.name} has none "
            f"(services/{spec.name}/service.yaml); try another --drift"
        )


def _shifted(feature: Feature, values: pd.Series, rng: np.random.Generator) -> pd.Series:
    """Numeric: one standard deviation up, kept in range; categorical: uniform draws."""
    if feature.type == "categorical":
        drawn = rng.choice(list(feature.categories or ()), size=len(values))
        return pd.Series(drawn, index=values.index).where(values.notna(), None)
    spread = float(values.std())
    step = spread if np.isfinite(spread) and spread > 0 else 1.0
    shifted = (values + step).clip(feature.min, feature.max)
    if feature.type == "integer":
        shifted = shifted.round()
        if pd.api.types.is_integer_dtype(values):
            shifted = shifted.astype(values.dtype)
    return shifted
