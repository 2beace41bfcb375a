"""Feature encoding shared by training and serving: rows -> a float32 matrix for XGBoost.

Categorical features become their index in the spec's `categories` (unknown -> missing);
XGBoost is told which columns are categorical through `feature_types`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from services.spec import ServiceSpec

NAN = float("nan")


class FeatureEncoder:
    """Encodes records or frames of one service's features, in spec order."""

    def __init__(self, spec: ServiceSpec) -> None:
        self.names = spec.feature_names
        self.feature_types = ["c" if f.type == "categorical" else "q" for f in spec.features]
        self._codes: dict[str, dict[str, float]] = {
            f.name: {c: float(i) for i, c in enumerate(f.categories or ())}
            for f in spec.features
            if f.type == "categorical"
        }

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode validated records (dicts); a plain loop, fastest for small requests."""
        out = np.empty((len(records), len(self.names)), dtype=np.float32)
        for j, name in enumerate(self.names):
            codes = self._codes.get(name)
            for i, record in enumerate(records):
                value = record.get(name)
                if value is None:
                    out[i, j] = NAN
                elif codes is not None:
                    out[i, j] = codes.get(value, NAN)
                else:
                    out[i, j] = float(value)
        return out

    def encode_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode a DataFrame holding (at least) the feature columns; vectorised."""
        out = np.empty((len(frame), len(self.names)), dtype=np.float32)
        for j, name in enumerate(self.names):
            column = frame[name]
            codes = self._codes.get(name)
            if codes is not None:
                out[:, j] = column.map(codes).astype("float64").to_numpy()
            else:
                out[:, j] = pd.to_numeric(column.astype("float64"), errors="coerce").to_numpy()
        return out
