"""The practical-limit servers' app: one starlette route scoring in-process with a runtime.

Named feature records in (`{"records": [...]}`), encoded as the replicas encode them, the
runtime's outputs out (`{"predictions": [...]}`). The booster file and the service come from
MLOPS_BENCH_BOOSTER and MLOPS_BENCH_SERVICE (default fraud-detection).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import xgboost as xgb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from benchmarks.model_limit import Predict
from services.encoding import FeatureEncoder
from services.spec import load_spec
from serving.protocol import PREDICTIONS, RECORDS

BOOSTER_ENV = "MLOPS_BENCH_BOOSTER"
SERVICE_ENV = "MLOPS_BENCH_SERVICE"


def bare_app(runtime: Callable[[xgb.Booster], Predict]) -> Starlette:
    """POST /predict answered by `runtime` on the booster of MLOPS_BENCH_BOOSTER."""
    encoder = FeatureEncoder(load_spec(os.environ.get(SERVICE_ENV, "fraud-detection")))
    predict = runtime(xgb.Booster(model_file=os.environ[BOOSTER_ENV]))

    async def score(request: Request) -> Response:
        records = json.loads(await request.body())[RECORDS]
        raw = predict(encoder.encode_records(records))
        return Response(json.dumps({PREDICTIONS: raw.tolist()}), media_type="application/json")

    return Starlette(routes=[Route("/predict", score, methods=["POST"])])
