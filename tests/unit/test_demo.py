"""The demo's summary is readable without a terminal: nothing cut, paths and URLs whole."""

from __future__ import annotations

from dataclasses import replace
from io import StringIO
from pathlib import Path

import pytest

from mlops.demo import WIDE, DemoState, demo_console, summary_table
from monitoring.pull_requests import PullRequestResult
from services.settings import get_settings
from tests.constructed import HEALTHY, result, stats

pytestmark = pytest.mark.unit
DEEP = Path("/a/very/long/home/of/a/user/with/a/deep/checkout/.mlops/monitoring/fraud-detection")


def state() -> DemoState:
    fraud = result(replace(HEALTHY, requests=stats(600, 4.2, server_errors=6)))
    fraud.report_html = DEEP / "20260601T120000Z" / "report.html"
    fraud.pull_request = PullRequestResult(
        url=str(DEEP.parent.parent / "pull-requests" / "monitor__fraud-detection__retrain.md"),
        branch="monitor/fraud-detection/retrain",
        created=True,
        committed=True,
    )
    demand = result(replace(HEALTHY, requests=stats(90, 3.0)), service="demand-forecast")
    return DemoState(
        versions={"fraud-detection": "2", "demand-forecast": "1"},
        monitor={"fraud-detection": fraud, "demand-forecast": demand},
    )


REGISTERED = [
    {"service": s, "version": v, "metric": m, "value": "0.9123"}
    for s, v, m in (
        ("fraud-detection", "2", "roc_auc"),
        ("fraud-detection", "1", "roc_auc"),
        ("demand-forecast", "1", "rmse"),
    )
]


@pytest.mark.parametrize("width", [None, 80])  # a log file; a narrow terminal
def test_the_summary_cuts_nothing_and_prints_paths_and_urls_whole(width):
    out = StringIO()
    terminal = (
        {} if width is None else {"width": width, "force_terminal": True, "color_system": None}
    )
    console = demo_console(file=out, **terminal)
    demo = state()
    table, links = summary_table(demo, REGISTERED, get_settings())
    console.print(table)
    for line in links:
        console.print(line, markup=False, highlight=False)
    text = out.getvalue()

    assert "…" not in text
    lines = text.splitlines()
    fraud = demo.monitor["fraud-detection"]
    for whole in (str(fraud.report_html), fraud.pull_request.url, get_settings().metrics_url):
        assert any(whole in line for line in lines), whole
    if width is None:  # not a terminal: wide enough for one line per service
        row = next(line for line in lines if "fraud-detection" in line and "v2" in line)
        assert "4.2 ms" in row and "1.00%" in row and "met" in row
        assert any("demand-forecast" in line and "too-few-requests" in line for line in lines)


def test_output_that_is_no_terminal_gets_wide_tables():
    assert demo_console(file=StringIO()).width == WIDE
