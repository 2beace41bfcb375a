"""Deterministic data of each service, from the generator that lives beside its spec.

A service folder may hold `generate.py` with `generate(rows, seed, drift) -> DataFrame`;
drift knobs let monitoring and tests simulate a changing world. Services without one bring
a DVC-tracked snapshot instead.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import pandas as pd

from services.drift import DRIFT_KINDS, Drift
from services.spec import ServiceSpec, SpecError

GENERATOR_FILE = "generate.py"

Generator = Callable[[int, int, str], pd.DataFrame]


def has_generator(spec: ServiceSpec) -> bool:
    """Whether the service's folder has a `generate.py` (else its data is a DVC snapshot)."""
    return (spec.folder / GENERATOR_FILE).is_file()


def check_drift(drift: str) -> None:
    if drift not in DRIFT_KINDS:
        raise ValueError(f"unknown drift '{drift}' (choose from {', '.join(DRIFT_KINDS)})")


def load_generator(spec: ServiceSpec) -> Generator:
    """The `generate` function of a service, imported from its folder."""
    path = spec.folder / GENERATOR_FILE
    module_spec = importlib.util.spec_from_file_location(
        f"_generate_{spec.name.replace('-', '_')}", path
    )
    if module_spec is None or module_spec.loader is None or not path.exists():
        raise SpecError(f"{path}: generator not found")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.generate


def generate(spec: ServiceSpec, rows: int, seed: int, drift: Drift = "none") -> pd.DataFrame:
    """`rows` rows of features + target, identical for the same (rows, seed, drift)."""
    check_drift(drift)
    frame = load_generator(spec)(rows, seed, drift)
    expected = [*spec.feature_names, spec.target]
    if list(frame.columns) != expected:
        raise SpecError(
            f"{spec.folder / GENERATOR_FILE}: columns {list(frame.columns)} "
            f"differ from the spec's {expected}"
        )
    return frame
