"""The model-limit table: speed-ups against XGBoost's call, the rounds' spread, and whether a
runtime gives the same predictions (1e-6) or could not run at all."""

from __future__ import annotations

from benchmarks.bench_model_limit import markdown


def test_the_table_shows_speed_ups_spread_and_sameness():
    results = [
        {
            "runtime": "xgb",
            "max_abs_difference": 0.0,
            "1_rows_us": [100, 90, 110],
            "64_rows_us": [200, 200, 200],
        },
        {
            "runtime": "fast",
            "max_abs_difference": 4e-7,
            "1_rows_us": [10, 10, 12],
            "64_rows_us": [100, 90, 100],
        },
        {
            "runtime": "wrong",
            "max_abs_difference": 0.01,
            "1_rows_us": [5, 5, 5],
            "64_rows_us": [5, 5, 5],
        },
        {"runtime": "refused", "error": "ValueError: no"},
    ]
    rows = {
        line.split(" | ")[0].strip("| "): line for line in markdown(results, 61, 7500).splitlines()
    }
    assert (
        rows["xgb"]
        == "| xgb | 100.0 (90.0-110.0) | 1.0 | 200.0 (200.0-200.0) | 1.0 | 0.0e+00 | yes |"
    )
    assert (
        rows["fast"]
        == "| fast | 10.0 (10.0-12.0) | 10.0 | 100.0 (90.0-100.0) | 2.0 | 4.0e-07 | yes |"
    )
    assert rows["wrong"].endswith("| 1.0e-02 | no |")
    assert rows["refused"] == "| refused | - | - | - | - | ValueError: no | no |"
