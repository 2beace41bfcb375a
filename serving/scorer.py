"""The actor of `mlops batch-score`: one version's model per Ray Data worker, validated pandas
batches in, predictions out.

A module of its own: Ray pickles the class by reference, so a worker imports this module and
what scoring needs (the model from the node's cache), not the driver's MLflow and git code; the
driver, which only pickles the class, imports neither XGBoost nor the model cache.
"""

from __future__ import annotations

import pandas as pd

from services.inference_log import MODEL_VERSION
from services.schema import validate_features


class Scorer:
    """Ray Data callable: scores batches with version `version` of `service` and its own spec."""

    def __init__(self, service: str, version: str) -> None:
        from services.model_cache import load_cached  # on the worker only (XGBoost comes along)

        self.version = version
        self.model = load_cached(service, version)
        self.spec = self.model.spec  # the scored version's own features and rules

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        features = batch.reindex(columns=self.spec.feature_names)
        problems = validate_features(self.spec, features)
        if problems:
            raise ValueError(f"{len(problems)} invalid values, first: {problems[0]}")
        outputs = self.model.predict_frame(features)
        return pd.concat([batch.reset_index(drop=True), outputs], axis=1).assign(
            **{MODEL_VERSION: self.version}
        )
