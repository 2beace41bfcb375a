"""The practical limit on ONNX Runtime: the bare app scoring the onnxmltools conversion.

Runs in the runtimes' environment (benchmarks/runtimes/requirements.txt) with the repository
on PYTHONPATH; `benchmarks.bench_model_limit.bare_onnx_command` builds the command.

    PYTHONPATH=. MLOPS_BENCH_BOOSTER=model.ubj MLOPS_BENCH_SERVICE=fraud-detection \
        benchmarks/runtimes/.venv/bin/python -m uvicorn benchmarks.bare_onnx_server:app
"""

from __future__ import annotations

from benchmarks.bare_app import bare_app
from benchmarks.model_limit import onnx_runtime

app = bare_app(onnx_runtime)
