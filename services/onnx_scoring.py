"""A version's booster converted to ONNX, checked against XGBoost, and scored by ONNX Runtime.

Registration converts the booster with onnxmltools and keeps the conversion only when it
predicts every row of the test split within `TOLERANCE` of XGBoost (`check_conversion`).
Replicas then score calls of up to `SMALL_CALL_ROWS` rows with it: ONNX Runtime answers one row
in a fraction of `inplace_predict`'s fixed cost per call, while XGBoost is faster per row on
large batches (benchmarks/MODEL_LIMIT.md measures both). onnxmltools is imported by
registration only, ONNX Runtime by the processes that score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from services.lean_xgboost import xgb

#: The largest difference from XGBoost's prediction a conversion may have on any test row.
TOLERANCE = 1e-6
#: Calls of up to this many rows are scored by ONNX Runtime, larger ones by XGBoost.
SMALL_CALL_ROWS = 32
INPUT = "input"

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Conversion:
    """The outcome of converting a booster: the ONNX model when it passed the check."""

    model: bytes | None
    verdict: str  # why it is kept or not, for the version's tag and the log

    @property
    def passed(self) -> bool:
        return self.model is not None


def convert(booster: xgb.Booster) -> bytes:
    """The booster as a serialized ONNX model with one float input of its features."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    renamed = booster.copy()  # the converter reads features named f0, f1, ...
    renamed.feature_names = [f"f{i}" for i in range(booster.num_features())]
    model = onnxmltools.convert_xgboost(
        renamed, initial_types=[(INPUT, FloatTensorType([None, booster.num_features()]))]
    )
    return model.SerializeToString()


def onnx_predictor(model: bytes) -> Predict:
    """ONNX Runtime on one thread: encoded rows in, XGBoost's output out (the probability of
    class 1 for binary, the value for regression)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # one core per replica
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    output = session.get_outputs()[-1].name  # probabilities (n, 2) or values (n, 1)

    def predict(matrix: np.ndarray) -> np.ndarray:
        return session.run([output], {INPUT: matrix})[0].reshape(len(matrix), -1)[:, -1]

    return predict


def check_conversion(booster: xgb.Booster, matrix: np.ndarray) -> Conversion:
    """Convert `booster`; keep the conversion when it predicts every row of `matrix` (encoded
    test rows) within `TOLERANCE` of `inplace_predict`."""
    try:
        model = convert(booster)
        converted = onnx_predictor(model)(matrix)
    except Exception as exc:  # a converter refusing a model is a verdict, not a failed training
        return Conversion(None, f"conversion failed ({type(exc).__name__}: {exc})"[:300])
    difference = float(np.max(np.abs(converted - booster.inplace_predict(matrix))))
    rows = f"{len(matrix):,} test rows"
    if difference <= TOLERANCE:
        return Conversion(model, f"kept: largest difference {difference:.1e} over {rows}")
    return Conversion(
        None, f"dropped: largest difference {difference:.1e} over {rows} exceeds {TOLERANCE:.0e}"
    )
