"""The reliability report: figure records -> Markdown tables spliced into the document."""

from __future__ import annotations

import json

import pytest

from tests.figures import FIGURES_ENV, record_figure
from tests.reliability_report import END, START, load_figures, main, render_tables, splice

pytestmark = pytest.mark.unit

FIGURES = [
    {"item": "Replica killed", "figure": "requests", "value": 1573, "target": ">= 1,000",
     "passed": True},
    {"item": "Replica killed", "figure": "recovery (s)", "value": 16.25, "target": "<= 15",
     "passed": False},
    {"item": "Log | scale-down", "figure": "lost rows", "value": 0, "target": "0",
     "passed": True},
]  # fmt: skip


def test_render_tables_makes_one_table_per_item_with_pass_and_fail():
    text = render_tables(FIGURES, "Last run: today.")
    assert text.startswith("Last run: today.")
    assert "#### Replica killed (FAIL)" in text
    assert "#### Log \\| scale-down (pass)" not in text  # headings are not table cells
    assert "#### Log | scale-down (pass)" in text
    assert "| requests | 1,573 | >= 1,000 | pass |" in text
    assert "| recovery (s) | 16.25 | <= 15 | **FAIL** |" in text
    assert "| lost rows | 0 | 0 | pass |" in text
    assert text.index("Replica killed") < text.index("Log | scale-down")
    assert text.count("| figure | measured | target | result |") == 2


def test_render_tables_without_figures_says_so():
    assert "No figures were recorded." in render_tables([], "Last run: today.")


def test_splice_keeps_the_prose_around_the_markers():
    document = f"# Title\n\nintro\n\n{START}\nold table\n{END}\n\n## After\ntext\n"
    spliced = splice(document, "new table")
    assert spliced == f"# Title\n\nintro\n\n{START}\nnew table\n{END}\n\n## After\ntext\n"
    assert splice(spliced, "newer") == spliced.replace("new table", "newer")
    with pytest.raises(ValueError, match="markers"):
        splice("# no markers", "table")


def test_recorded_figures_reach_the_document(tmp_path, monkeypatch):
    figures = tmp_path / "figures.jsonl"
    assert record_figure("x", "y", 1, "1", True)  # no file named: nothing written
    assert not figures.exists()
    monkeypatch.setenv(FIGURES_ENV, str(figures))
    assert not record_figure("Item", "failed requests", 2, "0", False)
    assert load_figures(figures) == [
        {"item": "Item", "figure": "failed requests", "value": 2, "target": "0", "passed": False}
    ]
    document = tmp_path / "RELIABILITY.md"
    document.write_text(f"intro\n{START}\n{END}\noutro\n")
    assert main(["--figures", str(figures), "--document", str(document)]) == 1  # a figure failed
    written = document.read_text()
    assert "| failed requests | 2 | 0 | **FAIL** |" in written
    assert written.startswith("intro\n") and written.endswith("\noutro\n")
    assert json.loads(figures.read_text())["passed"] is False
