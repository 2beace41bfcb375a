"""Run the reliability tests and write their figures into docs/RELIABILITY.md.

`make reliability` (or `python -m tests.reliability_report [-- <pytest args>]`) runs
`pytest -m reliability` with MLOPS_RELIABILITY_FIGURES pointing at a fresh file, then
replaces the block between the two markers of the document with one table per item
(figure, measured value, target, pass/fail). The prose around the markers is kept.
`--figures <file>` renders figures recorded earlier without running the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.figures import FIGURES_ENV

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "RELIABILITY.md"
START = "<!-- reliability-figures:start (written by `make reliability`) -->"
END = "<!-- reliability-figures:end -->"


def load_figures(path: Path) -> list[dict[str, Any]]:
    """The JSON lines the tests appended (tests/figures.py)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _cell(value: object) -> str:
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, int):
        text = f"{value:,}"
    elif isinstance(value, float):
        text = f"{value:,.2f}".rstrip("0").rstrip(".")
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render_tables(figures: list[dict[str, Any]], summary: str) -> str:
    """`summary`, then one Markdown table per item, items and rows in recorded order."""
    items: dict[str, list[dict[str, Any]]] = {}
    for figure in figures:
        items.setdefault(figure["item"], []).append(figure)
    parts = [summary.strip()]
    if not items:
        parts.append("No figures were recorded.")
    for item, rows in items.items():
        verdict = "pass" if all(r["passed"] for r in rows) else "FAIL"
        lines = [
            f"#### {item} ({verdict})",
            "",
            "| figure | measured | target | result |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {_cell(r['figure'])} | {_cell(r['value'])} | {_cell(r['target'])} | "
            f"{'pass' if r['passed'] else '**FAIL**'} |"
            for r in rows
        ]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def splice(document: str, block: str) -> str:
    """`document` with the text between START and END replaced by `block`."""
    head, start, rest = document.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"the document needs the markers {START!r} and {END!r}")
    return f"{head}{START}\n{block.strip()}\n{END}{tail}"


def run_tests(figures: Path, pytest_args: list[str]) -> tuple[int, float]:
    """`pytest -m reliability` with the figures file set; returns exit code and seconds."""
    command = [sys.executable, "-m", "pytest", "-m", "reliability", "-p", "no:cacheprovider"]
    started = time.monotonic()
    result = subprocess.run(
        [*command, *pytest_args], cwd=ROOT, env=os.environ | {FIGURES_ENV: str(figures)}
    )
    return result.returncode, time.monotonic() - started


def summary_line(exit_code: int, seconds: float) -> str:
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    outcome = "all passed" if exit_code == 0 else f"pytest exit code {exit_code}"
    return (
        f"Last run: {day}, `pytest -m reliability` on {os.cpu_count()} cores, "
        f"{seconds / 60:.1f} min including the fixtures, {outcome}."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=Path, help="render these figures; run nothing")
    parser.add_argument("--document", type=Path, default=DOCUMENT)
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.figures:
        exit_code, seconds, figures = 0, 0.0, load_figures(args.figures)
        summary = f"Figures from {args.figures.name}."
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "figures.jsonl"
            exit_code, seconds = run_tests(path, args.pytest_args)
            figures = load_figures(path)
        summary = summary_line(exit_code, seconds)
    block = render_tables(figures, summary)
    args.document.write_text(splice(args.document.read_text(), block))
    failed = sum(not f["passed"] for f in figures)
    print(f"{len(figures)} figures ({failed} failed) written to {args.document}")
    return exit_code or int(failed > 0)


if __name__ == "__main__":
    raise SystemExit(main())
