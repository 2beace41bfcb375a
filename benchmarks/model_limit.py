"""The model's own limit: one booster's prediction latency in-process, per runtime.

Runs in the runtimes' environment (benchmarks/runtimes/requirements.txt), not the project's:
`python model_limit.py <booster.ubj> <rows.npy> <out.json>`. Each runtime predicts the same
encoded rows (categoricals as codes, as the replicas feed XGBoost) on one thread:
- XGBoost `inplace_predict` (what the replicas call);
- ONNX Runtime on the onnxmltools conversion;
- TL2cgen: the trees compiled to C by gcc, loaded as a shared library.

For each: per-call latency of 1 to 256 rows (median of many calls, three rounds), and
the largest difference from XGBoost's prediction over every row given, or why it could not run.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xgboost as xgb

Predict = Callable[[np.ndarray], np.ndarray]
BATCHES = {1: 2_000, 8: 1_000, 32: 500, 64: 500, 256: 200}  # rows per call -> calls a round
ROUNDS = 3


def xgboost_runtime(booster: xgb.Booster) -> Predict:
    """XGBoost's own `inplace_predict` on one thread: the replicas' call."""
    booster.set_param({"nthread": 1})
    return lambda rows: booster.inplace_predict(rows)


def onnx_runtime(booster: xgb.Booster) -> Predict:
    """ONNX Runtime (one thread, sequential) on the onnxmltools conversion; the same output
    as XGBoost's (probability of class 1 for binary, the value for regression)."""
    import onnxmltools
    import onnxruntime
    from onnxmltools.convert.common.data_types import FloatTensorType

    features = booster.num_features()
    booster.feature_names = [f"f{i}" for i in range(features)]  # the converter's pattern
    model = onnxmltools.convert_xgboost(
        booster, initial_types=[("input", FloatTensorType([None, features]))]
    )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    session = onnxruntime.InferenceSession(model.SerializeToString(), options)
    output = session.get_outputs()[-1].name  # probabilities (n, 2) or values (n, 1)
    return lambda rows: session.run([output], {"input": rows})[0].reshape(len(rows), -1)[:, -1]


def tl2cgen_runtime(booster: xgb.Booster) -> Predict:
    import tl2cgen
    import treelite

    model = treelite.frontend.from_xgboost(booster)
    library = Path(tempfile.mkdtemp(prefix="tl2cgen-")) / "model.so"
    tl2cgen.export_lib(model, toolchain="gcc", libpath=str(library), params={"parallel_comp": 1})
    predictor = tl2cgen.Predictor(str(library), nthread=1)
    return lambda rows: predictor.predict(tl2cgen.DMatrix(rows)).reshape(len(rows), -1)[:, -1]


XGBOOST, ONNX = "XGBoost inplace_predict", "ONNX Runtime (onnxmltools)"
RUNTIMES = {
    XGBOOST: xgboost_runtime,
    ONNX: onnx_runtime,
    "TL2cgen (gcc)": tl2cgen_runtime,
}


def latency_us(predict: Predict, rows: np.ndarray, size: int, calls: int) -> list[float]:
    """Median per-call microseconds of each round."""
    batch = np.ascontiguousarray(rows[:size])
    medians = []
    for _ in range(ROUNDS):
        times = []
        for _ in range(calls):
            started = time.perf_counter_ns()
            predict(batch)
            times.append((time.perf_counter_ns() - started) / 1000)
        medians.append(statistics.median(times))
    return medians


def measure(booster_path: Path, rows: np.ndarray) -> list[dict[str, object]]:
    reference = xgboost_runtime(xgb.Booster(model_file=str(booster_path)))(rows)
    results = []
    for name, make in RUNTIMES.items():
        result: dict[str, object] = {"runtime": name}
        try:
            predict = make(xgb.Booster(model_file=str(booster_path)))
            result["max_abs_difference"] = float(np.max(np.abs(predict(rows) - reference)))
            for size, calls in BATCHES.items():
                result[f"{size}_rows_us"] = latency_us(predict, rows, size, calls)
        except Exception as exc:  # a converter refusing the model is a result, not a crash
            result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        results.append(result)
    return results


if __name__ == "__main__":
    booster_file, rows_file, out_file = map(Path, sys.argv[1:4])
    data = np.load(rows_file).astype(np.float32)
    out_file.write_text(json.dumps(measure(booster_file, data), indent=2))
