"""The serving benchmark's command line, without a stack."""

from __future__ import annotations

import pytest

from benchmarks import bench_serving

pytestmark = pytest.mark.unit


def test_an_unknown_section_is_refused_by_name_before_anything_runs(capsys, tmp_path):
    with pytest.raises(SystemExit) as exited:
        bench_serving.main(["--sections", "durability,speed", "--output", str(tmp_path)])
    assert exited.value.code == 2
    assert "unknown sections: speed" in capsys.readouterr().err


def test_a_subset_of_sections_keeps_the_stored_figures_of_the_others(monkeypatch, tmp_path):
    (tmp_path / "results.json").write_text('{"cores": 2, "monitor": {"rows": 1}, "batch": {}}')
    measured = {"durability": {"os": []}, "cores": 2}
    calls = []

    def run(workdir, duration_s, rows, monitor_rows, sections):
        calls.append(sections)
        return measured

    monkeypatch.setattr(bench_serving, "run", run)
    monkeypatch.setattr(bench_serving, "report", lambda results: str(sorted(results)))
    monkeypatch.setattr(bench_serving, "plot", lambda results, path: None)
    bench_serving.main(["--sections", "durability", "--output", str(tmp_path)])
    stored = (tmp_path / "results.json").read_text()
    assert calls == [["durability"]]
    assert '"monitor"' in stored and '"durability"' in stored
    assert (tmp_path / "RESULTS.md").read_text().startswith("['batch', 'cores', 'durability'")


def test_report_only_measures_nothing_and_writes_the_report_from_the_stored_figures(
    monkeypatch, tmp_path
):
    (tmp_path / "results.json").write_text('{"cores": 2}')
    monkeypatch.setattr(bench_serving, "run", lambda *args: pytest.fail("measured"))
    monkeypatch.setattr(bench_serving, "report", lambda results: f"report of {sorted(results)}")
    monkeypatch.setattr(bench_serving, "plot", lambda results, path: None)
    assert bench_serving.main(["--report-only", "--output", str(tmp_path)]) == 0
    assert (tmp_path / "RESULTS.md").read_text().startswith("report of ['cores']")
