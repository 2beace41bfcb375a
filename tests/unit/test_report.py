"""Monitor outputs of constructed results: the markdown (step summary), summary JSON, MLflow
metrics and the CLI table carry the SLO figures next to their objectives."""

from __future__ import annotations

import json
from dataclasses import replace
from io import StringIO

import pytest
from rich.console import Console

from mlops.commands.monitoring import result_table
from monitoring import report
from monitoring.tracking import run_metrics
from tests.constructed import HEALTHY, result, slow_after_promotion, stats

pytestmark = pytest.mark.unit


def test_the_markdown_has_a_row_per_version_next_to_the_slos():
    text = report.markdown(result(slow_after_promotion()))
    assert "SLOs: p99 latency <= 100 ms (answered real-time requests), 5xx rate <= 1.00%" in text
    assert (
        "| v2 (production) | 400 | 125.0 | 250.0 | 0.00% | 0.00% | breached: p99_latency_ms |"
        in text
    )
    assert "| v1 (previous) | 400 | 2.5 | 5.0 | 0.00% | 0.00% | met |" in text
    assert "**revert**" in text and "v2 breaches its SLO: p99 latency 250.0 ms" in text


def test_summary_json_and_step_summary_report_a_breach_without_a_revert(tmp_path, monkeypatch):
    step_summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    late = replace(slow_after_promotion(), hours_since_promotion=200.0)  # outside the window
    outcome = result(late)
    report.write_summaries(outcome, tmp_path)

    summary = json.loads(outcome.summary_json.read_text())
    assert summary["decision"] == "none"
    assert summary["slo"]["targets"] == {
        "p99_latency_ms": 100,
        "error_rate": 0.01,
        "min_requests": 200,
    }
    assert summary["slo"]["breaches"] == [
        "p99 latency 250.0 ms (400 answered real-time requests) > 100 ms"
    ]
    production, previous = summary["slo"]["versions"]
    assert production["role"] == "production" and production["status"] == "breached"
    assert (production["requests"], production["p99_latency_ms"]) == (400, 250.0)
    assert previous["status"] == "met" and previous["server_error_rate"] == 0.0
    assert summary["thresholds"]["slo"]["p99_latency_ms"] == 100
    shown = step_summary.read_text()
    assert "reported only (promoted outside the 72 h revert window)" in shown
    assert "| v2 (production) | 400 |" in shown


def test_mlflow_metrics_hold_the_production_versions_figures():
    measured = replace(HEALTHY, requests=stats(500, 8.0, server_errors=5, client_errors=50))
    metrics = run_metrics(result(measured))
    assert metrics["requests"] == 500 and metrics["p99_latency_ms"] == 8.0
    assert metrics["server_error_rate"] == 0.01 and metrics["client_error_rate"] == 0.1
    assert "requests" not in run_metrics(result(HEALTHY))  # no records: no figures


def test_the_cli_table_has_the_slo_line_of_every_version():
    out = StringIO()
    Console(file=out, width=100).print(result_table(result(slow_after_promotion())))
    text = out.getvalue()
    assert "SLO v2 (production)" in text and "SLO v1 (previous)" in text
    assert "breached: p99_latency_ms" in text and "p99 <= 100 ms, 5xx <= 1.00%" in text
