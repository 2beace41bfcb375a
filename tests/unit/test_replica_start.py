"""The replica start-up document: the table and the replica's verdict against the bare floor."""

from __future__ import annotations

import pytest

from benchmarks.replica_start import PARTS, markdown

pytestmark = pytest.mark.unit


def _case(process: float, cpu: float) -> dict[str, dict[str, float]]:
    values = dict.fromkeys(PARTS, 0.5) | {"process": process, "process CPU": cpu}
    return {part: {"median": v, "min": v, "max": v} for part, v in values.items()}


def test_the_replica_is_judged_against_the_bare_floor_by_wall_clock_and_cpu():
    text = markdown({"baseline": _case(4.0, 4.0), "replica": _case(5.0, 7.0)})
    assert "| replica | 5.00 (5.00-5.00) | 7.00 (7.00-7.00) |" in text
    assert "process: 1.25x (target <= 1.5x: met)" in text
    assert "process CPU: 1.75x (target <= 1.5x: missed)" in text
    assert "target <=" not in markdown({"replica": _case(5.0, 7.0)})  # no floor: no ratio
