"""The replica profile of the serving benchmark without a stack: py-spy's samples by layer."""

from __future__ import annotations

import pytest

from benchmarks import replica_profile
from benchmarks.replica_profile import (
    OTHER,
    PROJECT,
    STANDARD_LIBRARY,
    STDLIB,
    layer_samples,
    report_lines,
)

pytestmark = pytest.mark.unit
SITE = "/repo/.venv/lib/python3.11/site-packages"
LOOP = f"Thread.run ({STDLIB}threading.py:982)"
SEND = f"RequestResponseCycle.send ({SITE}/uvicorn/protocols/http/httptools_impl.py:560)"
RAY_SERVE = f"Replica._direct_ingress_asgi ({SITE}/ray/serve/_private/replica.py:1200)"
RAY_CORE = f"Metric._record ({SITE}/ray/util/metrics.py:90)"
OURS = "ServiceApi.predictions (/repo/serving/api.py:120)"
TASK = f"Task.__step ({STDLIB}asyncio/tasks.py:277)"
GENERATED = "__create_fn__.<locals>.__init__ (<string>:3)"


def raw(*stacks: tuple[int, list[str]]) -> list[str]:
    return [f"{';'.join(frames)} {count}" for count, frames in stacks]


def test_a_sample_belongs_to_its_innermost_frame_outside_the_standard_library():
    samples = layer_samples(
        raw(
            (5, [LOOP, RAY_SERVE, OURS, TASK]),  # asyncio's step: charged to its caller
            (3, [LOOP, RAY_SERVE, OURS, GENERATED]),  # a dataclass's __init__: its caller's
            (7, [LOOP, RAY_SERVE, SEND]),
            (2, [LOOP, RAY_SERVE, RAY_CORE]),  # ray/ but not ray/serve/
            (4, [LOOP]),  # uvloop's C code under the thread's run
            (1, [LOOP, f"f ({SITE}/yaml/loader.py:1)"]),
            (6, [LOOP, RAY_SERVE, OURS, "", "client (server:-26)"]),  # frames misread
        )
    )
    assert samples == {
        PROJECT: 14,
        "HTTP server (uvicorn, httptools)": 7,
        "Ray core": 2,
        STANDARD_LIBRARY: 4,
        OTHER: 1,
    }


def test_lines_that_are_no_samples_are_skipped():
    assert layer_samples(["", "no count here", f"{OURS} 2"]) == {PROJECT: 2}


def test_the_report_gives_shares_largest_first_and_the_requests_own_work():
    text = "\n".join(
        report_lines(
            {
                "Ray Serve (replica wrapper, request context, metrics)": 60,
                PROJECT: 30,
                "validation (pydantic)": 10,
            }
        )
    )
    table = [line for line in text.splitlines() if line.startswith("| ") and "%" in line]
    assert [line.split(" | ")[1] for line in table] == ["60.0% |", "30.0% |", "10.0% |"]
    assert "holds 40% of it" in text
    assert f"at {replica_profile.RATE_HZ} Hz" in text and "(100 samples)" in text


def test_results_of_older_runs_without_a_profile_report_nothing():
    assert report_lines(None) == []
