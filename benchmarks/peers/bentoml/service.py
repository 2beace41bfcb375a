"""BentoML's peer: the booster behind one async API, as BentoML's XGBoost example serves it
(a JSON body `{"data": [[...]]}` parsed into the np.ndarray the signature names).

    cd benchmarks/peers/bentoml && MLOPS_BENCH_BOOSTER=model.ubj bentoml serve service:Scorer
"""

import os

import bentoml
import numpy as np
import xgboost as xgb


@bentoml.service(workers=2, logging={"access": {"enabled": False}})
class Scorer:
    """One booster per worker process, one thread each."""

    def __init__(self) -> None:
        self.booster = xgb.Booster(model_file=os.environ["MLOPS_BENCH_BOOSTER"])
        self.booster.set_param({"nthread": 1})

    @bentoml.api
    async def predict(self, data: np.ndarray) -> np.ndarray:
        return self.booster.inplace_predict(data)
