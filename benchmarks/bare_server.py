"""The practical limit: one starlette app scoring in-process with `inplace_predict`.

    MLOPS_BENCH_BOOSTER=model.ubj MLOPS_BENCH_SERVICE=fraud-detection \
        uvicorn benchmarks.bare_server:app --port 8100
"""

from __future__ import annotations

from benchmarks.bare_app import bare_app
from benchmarks.model_limit import xgboost_runtime

app = bare_app(xgboost_runtime)
