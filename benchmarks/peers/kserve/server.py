"""KServe's peer: a `kserve.Model` doing what KServe's xgbserver does (xgbserver pins xgboost
2.1 and is not on PyPI): the booster loaded with `nthread`; per request the input decoded by
KServe (V1 `instances` or a V2 tensor), an `xgb.DMatrix` of it, `Booster.predict`, and the
response encoded by KServe for the protocol the request came in.

    python server.py --booster model.ubj --model_name model --http_port 8080 --workers 2
"""

from __future__ import annotations

import argparse

import kserve
import xgboost as xgb
from kserve.errors import InferenceError
from kserve.protocol.infer_type import InferRequest, InferResponse
from kserve.utils.utils import get_predict_input, get_predict_response

# No access or timing line per request, in every worker: KServe configures each worker's logging
# from this dict, also a worker it restarts (one that missed its 5 s ping while starting),
# which --log_config_file does not reach. Worker processes import this file, so this runs there.
for name in ("uvicorn.access", "kserve.trace"):
    kserve.logging.KSERVE_LOG_CONFIG["loggers"][name]["level"] = "WARNING"

parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
parser.add_argument("--booster", required=True, help="the booster file (.ubj, .json, .bst)")
parser.add_argument("--nthread", default=1, type=int, help="XGBoost's threads per process")


class XGBoostModel(kserve.Model):
    """xgbserver's model, reading one booster file rather than a storage URI's folder."""

    def __init__(self, name: str, booster_file: str, nthread: int) -> None:
        super().__init__(name)
        self.booster_file = booster_file
        self.nthread = nthread

    def load(self) -> bool:
        self._booster = xgb.Booster(params={"nthread": self.nthread}, model_file=self.booster_file)
        self.ready = True
        return self.ready

    def predict(
        self, payload: dict | InferRequest, headers: dict[str, str] | None = None
    ) -> dict | InferResponse:
        try:
            dmatrix = xgb.DMatrix(
                get_predict_input(payload),
                nthread=self.nthread,
                # a booster trained on named (and categorical) features checks them
                feature_names=self._booster.feature_names,
                feature_types=self._booster.feature_types,
                enable_categorical=True,
            )
            result = self._booster.predict(dmatrix)
            return get_predict_response(payload, result, self.name)
        except Exception as error:
            raise InferenceError(str(error)) from error


if __name__ == "__main__":  # the worker processes are spawned: they import this file too
    args, _ = parser.parse_known_args()
    model = XGBoostModel(args.model_name, args.booster, args.nthread)
    model.load()
    kserve.ModelServer().start([model])
