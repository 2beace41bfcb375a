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


def test_realtime_loads_each_server_it_starts_at_its_own_url(monkeypatch, tmp_path):
    import contextlib
    import json

    from benchmarks import bench_model_limit, peer_servers, realtime, serve_floor

    started = []
    floors = []

    @contextlib.contextmanager
    def floor_deployed(service: str, replicas: int):
        floors.append(replicas)
        yield "http://ingress/serve-floor/predict"

    ports = iter(range(9001, 9100))
    monkeypatch.setattr("mlops.sandbox.free_port", lambda: next(ports))
    monkeypatch.setattr(
        bench_serving,
        "server",
        lambda command, health, env: started.append(health) or contextlib.nullcontext(),
    )
    monkeypatch.setattr(peer_servers, "PEERS", ())
    monkeypatch.setattr(serve_floor, "deployed", floor_deployed)
    monkeypatch.setattr(bench_model_limit, "bare_onnx_command", lambda b, p, w: (["onnx"], {}))
    monkeypatch.setattr(realtime, "measure", lambda targets, seconds: targets)
    body = json.dumps({"records": [{"amount": 1.0}]})
    targets = bench_serving.realtime(body, tmp_path / "model.ubj", "1", 1)
    urls = {t.name: t.url() for t in targets if t.kind not in ("ours", "ours-direct")}
    assert urls == {
        "Ray Serve's floor (a deployment that does no work)": "http://ingress/serve-floor/predict",
        "mlflow models serve": "http://127.0.0.1:9001/invocations",
        "bare starlette + inplace_predict": "http://127.0.0.1:9002/predict",
        "bare starlette + ONNX Runtime (the model's limit)": "http://127.0.0.1:9003/predict",
    }
    assert started == [
        "http://127.0.0.1:9001/ping",
        "http://127.0.0.1:9002/predict",
        "http://127.0.0.1:9003/predict",
    ]
    assert floors == [bench_serving.WORKERS]  # as many replicas as this project's under load


def test_the_batch_report_compares_the_specs_replicas_with_one(monkeypatch):
    monkeypatch.setattr(bench_serving.os, "cpu_count", lambda: 2)
    text = " ".join(
        bench_serving.batch_replicas_lines({"1": [300.0, 310.0, 290.0], "2": [380.0, 360.0, 390.0]})
    )
    assert "1 replica (0.5 per core): 300 rows/s (290-310)" in text
    assert "2 replicas (1 per core): 380 rows/s (360-390) (2 against 1.27x 1)" in text
    assert "held at the spec's `max_replicas` (2)" in text
    assert bench_serving.batch_replicas_lines(None) == []


def test_the_batch_score_report_sets_the_command_beside_ray_data():
    times = {
        "actors": {"small": [7.0, 8.0, 9.0], "large": [20.0, 19.0, 25.0]},
        "ray_data": {"small": [30.0] * 3, "large": [60.0] * 3},
    }
    figures = {"in_process": 1e6, "batch_score_rows": 5_000_000, "batch_score_s": times}

    text = "\n".join(bench_serving.batch_score_lines(figures))

    assert "| `mlops batch-score` | 250,000 | 8.0 s | 416,583 |" in text  # medians: 20 s, 8 s
    assert "| Ray Data | 83,333 | 30.0 s | 166,633 |" in text
    assert "runs the job 3.00x as fast as Ray Data" in text
    assert "beyond its start its 2 scorers score at 42% of in-process" in text
    assert bench_serving.batch_score_lines({"in_process": 1e6}) == []


def test_ray_serves_floor_gets_the_realtime_deployments_settings_and_goes_with_the_manifest(
    monkeypatch, tmp_path
):
    import shutil

    from benchmarks import serve_floor
    from serving import deploy, manifest
    from serving.deployments import REALTIME

    service = bench_serving.SERVICE
    served = tmp_path / "production.yaml"  # the manifest once the service has a version
    shutil.copy(manifest.manifest_path(), served)
    manifest.set_model_version(served, service, "1")
    monkeypatch.setattr(manifest, "manifest_path", lambda: served)
    deployed: list[dict] = []
    monkeypatch.setattr(deploy, "deploy_config", lambda config, what, t: deployed.append(config))
    monkeypatch.setattr(
        deploy, "deploy", lambda path, t: deployed.append(manifest.deployable(manifest.load(path)))
    )
    with serve_floor.deployed(service, 2) as url:
        assert url.endswith(f"/{serve_floor.NAME}/predict")
    with_floor, manifest_alone = deployed
    floor = next(a for a in with_floor["applications"] if a["name"] == serve_floor.NAME)
    app = next(a for a in with_floor["applications"] if a["name"] == service)
    realtime = next(d for d in app["deployments"] if d["name"] == REALTIME)
    (deployment,) = floor["deployments"]
    assert deployment["num_replicas"] == 2
    for key in ("max_ongoing_requests", "logging_config", "ray_actor_options"):
        assert deployment[key] == realtime[key]
    assert [a["name"] for a in manifest_alone["applications"]] == [service]  # the floor gone
