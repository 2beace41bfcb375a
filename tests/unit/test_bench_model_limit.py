"""The model-limit table: speed-ups against XGBoost's call, the rounds' spread, whether a
runtime gives the same predictions (1e-6) or could not run at all, and where ONNX Runtime
stops being faster."""

from __future__ import annotations

from benchmarks.bench_model_limit import SIZES, markdown
from benchmarks.model_limit import ONNX, XGBOOST


def timed(first: list[float], others: list[float], last: list[float] | None = None) -> dict:
    """Rounds of 1 row = `first`, the middle sizes = `others`, the largest = `last`."""
    rounds = {size: others for size in SIZES} | {SIZES[0]: first}
    rounds[SIZES[-1]] = last or others
    return {f"{size}_rows_us": value for size, value in rounds.items()}


def test_the_table_shows_speed_ups_spread_sameness_and_the_crossover():
    results = [
        {"runtime": XGBOOST, "max_abs_difference": 0.0} | timed([100, 90, 110], [200, 200, 200]),
        {"runtime": ONNX, "max_abs_difference": 4e-7}
        | timed([10, 10, 12], [100, 90, 100], [400, 400, 400]),
        {"runtime": "wrong", "max_abs_difference": 0.01} | timed([5, 5, 5], [5, 5, 5]),
        {"runtime": "refused", "error": "ValueError: no"},
    ]
    text = markdown(results, 61, 7500)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()}
    assert rows[XGBOOST].startswith(f"| {XGBOOST} | 100.0 (90.0-110.0) | 1.0 | 200.0 (200.0-200.0)")
    assert rows[XGBOOST].endswith("| 0.0e+00 | yes |")
    assert rows[ONNX].startswith(f"| {ONNX} | 10.0 (10.0-12.0) | 10.0 | 100.0 (90.0-100.0) | 2.0")
    assert rows[ONNX].endswith("| 400.0 (400.0-400.0) | 0.5 | 4.0e-07 | yes |")
    assert rows["wrong"].endswith("| 1.0e-02 | no |")
    assert rows["refused"] == "| refused |" + " - |" * (2 * len(SIZES)) + " ValueError: no | no |"
    faster = ", ".join(map(str, SIZES[:-1]))
    assert f"ONNX Runtime is faster at {faster} rows per call" in text
    assert len({line.count("|") for line in text.splitlines() if line.startswith("|")}) == 1
