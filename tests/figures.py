"""Figures that reliability tests measure, collected by `tests/reliability_report.py`.

When MLOPS_RELIABILITY_FIGURES names a file, every `record_figure` call appends one JSON
line to it; otherwise it does nothing. Tests record a figure before asserting on it, so a
failing run still reports what it measured.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FIGURES_ENV = "MLOPS_RELIABILITY_FIGURES"


def record_figure(item: str, figure: str, value: float | str, target: str, passed: bool) -> bool:
    """Append {item, figure, value, target, passed} to the figures file; returns `passed`."""
    out = os.environ.get(FIGURES_ENV)
    if out:
        line = {"item": item, "figure": figure, "value": value, "target": target}
        with Path(out).open("a") as handle:
            handle.write(json.dumps(line | {"passed": bool(passed)}) + "\n")
    return passed
