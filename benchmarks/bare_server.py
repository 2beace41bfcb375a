"""The practical limit: one starlette app scoring in-process with `inplace_predict`.

    MLOPS_BENCH_BOOSTER=model.ubj MLOPS_BENCH_SERVICE=fraud-detection \
        uvicorn benchmarks.bare_server:app --port 8100
"""

from __future__ import annotations

import json
import os

import xgboost as xgb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.encoding import FeatureEncoder
from services.spec import load_spec
from serving.protocol import PREDICTIONS, RECORDS

SPEC = load_spec(os.environ.get("MLOPS_BENCH_SERVICE", "fraud-detection"))
ENCODER = FeatureEncoder(SPEC)
BOOSTER = xgb.Booster(model_file=os.environ["MLOPS_BENCH_BOOSTER"])
BOOSTER.set_param({"nthread": 1})


async def predict(request: Request) -> Response:
    records = json.loads(await request.body())[RECORDS]
    raw = BOOSTER.inplace_predict(ENCODER.encode_records(records))
    return Response(json.dumps({PREDICTIONS: raw.tolist()}), media_type="application/json")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"])])
