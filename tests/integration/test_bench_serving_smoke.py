"""The serving benchmark's pieces on a tiny load: wrk parsing and a short run on the baseline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks.bench_serving import report
from benchmarks.load import parse_wrk, run_wrk
from benchmarks.servers import server
from benchmarks.telemetry_ab import report_lines
from mlops.sandbox import free_port
from services.datagen import generate
from services.schema import frame_to_records
from services.spec import load_spec
from serving.protocol import RECORDS
from tests.bench_results import results as bench_results

pytestmark = pytest.mark.integration

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:8000/x
  Latency Distribution
     50%  850.00us
     75%    1.20ms
     90%    2.00ms
     99%    1.05s
  1000 requests in 1.00s, 100.00KB read
  Non-2xx or 3xx responses: 3
Requests/sec:   1000.50
"""


def test_parse_wrk_reads_rate_percentiles_and_errors():
    result = parse_wrk("x", 16, WRK_OUTPUT)
    assert result.requests_per_s == 1000.5
    assert result.p50_ms == pytest.approx(0.85) and result.p99_ms == pytest.approx(1050)
    assert result.non_2xx == 3


def test_baseline_server_under_a_short_wrk_run(registered, repo):
    spec = load_spec("fraud-detection")
    body = json.dumps({RECORDS: frame_to_records(spec, generate(spec, 1, 3)[spec.feature_names])})
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "uvicorn"),
        "benchmarks.bare_server:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    env = {"MLOPS_BENCH_BOOSTER": str(repo / "models/fraud-detection/model.ubj")}
    with server(command, f"http://127.0.0.1:{port}/predict", env):
        result = run_wrk("bare", f"http://127.0.0.1:{port}/predict", body, 2, 1)
    assert result.requests_per_s > 0 and result.non_2xx == 0
    assert 0 < result.p50_ms <= result.p99_ms


def test_report_states_every_target():
    results = bench_results()
    text = report(results)
    assert "4.00x the requests/s of the best peer (mlflow; target >= 1.5x: met)" in text
    assert "67% of the requests/s of bare (target >= 90%: missed)" in text
    assert (
        "| `/batch` (Parquet bodies and answers of max_batch_rows) | 600,000 | 60% "
        "| >= 75%: missed |" in text
    )
    assert "| `/batch` (the same bodies, JSON answers) | 400,000 | 40% | - |" in text
    assert "(an object per row): 1.50x the rows/s." in text
    assert "| `mlops batch-score` (whole command) | 500,000 | 50% | >= 50%: met |" in text
    for target in ("<= 60 s", "<= 5 s", "<= 30 s", "<= 2 GiB", "<= 1.5x", "<= 1.2x"):
        assert target in text


def test_report_states_what_request_telemetry_costs():
    def run(rate: float) -> dict:
        return {"requests_per_s": rate, "p50_ms": 5.0, "p99_ms": 12.0, "cpu_ms_per_request": 0.7}

    text = "\n".join(
        report_lines({"on": [run(2_850.0), run(2_870.0)], "off": [run(2_950.0), run(2_990.0)]})
    )
    assert "| on | 2 | 2860 | 2850-2870 | 5.00 | 12.00 | 0.70 |" in text
    assert "| off | 2 | 2970 |" in text
    assert "cost 3.7% of the requests/s" in text
    assert report_lines(None) == []  # results of runs before the A/B existed
