"""The peer servers' wire formats and launch commands, without starting any of them."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest

from benchmarks.peer_servers import MODEL, PEERS, PEERS_DIR, WORKERS

pytestmark = pytest.mark.unit

BY_NAME = {peer.name: peer for peer in PEERS}
ROW = np.asarray([0.1, -2.5, 3e-8, 7.0], dtype=np.float32).tolist()


def test_each_body_is_what_the_peers_users_send_for_one_row():
    bodies = {name: json.loads(peer.body(ROW)) for name, peer in BY_NAME.items()}
    assert bodies["BentoML 1.4.40"] == {"data": [ROW]}
    assert bodies["KServe 0.21.0 (V1 protocol)"] == {"instances": [ROW]}
    tensor = {"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": ROW}
    assert bodies["KServe 0.21.0 (V2 protocol)"] == {"inputs": [tensor]}
    assert bodies["MLServer 1.7.1 (mlserver-xgboost)"] == {"inputs": [tensor]}


def sent_row(body: str) -> list[float]:
    sent = json.loads(body)
    return sent["inputs"][0]["data"] if "inputs" in sent else next(iter(sent.values()))[0]


def test_a_body_carries_the_float32_features_exactly():
    row = np.float32([0.1, 1 / 3, 123456.79])
    for peer in PEERS:
        sent = sent_row(peer.body(list(row)))  # numpy scalars are accepted too
        assert np.array_equal(np.float32(sent), row), peer.name


@pytest.mark.parametrize(
    ("name", "response"),
    [
        ("BentoML 1.4.40", "[0.25]"),
        ("KServe 0.21.0 (V1 protocol)", '{"predictions": [0.25]}'),
        (
            "KServe 0.21.0 (V2 protocol)",
            '{"model_name": "model", "outputs": [{"name": "output-0", "shape": [1], '
            '"datatype": "FP32", "data": [0.25]}]}',
        ),
        (
            "MLServer 1.7.1 (mlserver-xgboost)",
            '{"model_name": "model", "outputs": [{"name": "predict", "shape": [1, 1], '
            '"datatype": "FP32", "data": [0.25]}]}',
        ),
    ],
)
def test_predictions_are_read_from_each_response_shape(name, response):
    assert BY_NAME[name].predictions(response) == [0.25]


def test_peers_are_named_once_and_described():
    assert len(BY_NAME) == len(PEERS)
    for peer in PEERS:
        assert peer.per_request.endswith(".") and peer.setup.endswith("."), peer.name
        assert peer.path.startswith("/")


def test_each_environment_is_fully_pinned_and_its_venv_ignored():
    for folder in sorted({peer.folder for peer in PEERS}):
        lines = (PEERS_DIR / folder / "requirements.txt").read_text().splitlines()
        pins = [line.split("#")[0].strip() for line in lines if not line.startswith("#")]
        assert pins and all(re.fullmatch(r"[\w.-]+==[\w.+-]+", pin) for pin in pins), folder
        assert "xgboost==3.2.0" in pins, folder
        venv = PEERS_DIR / folder / ".venv" / "bin" / "python"
        ignored = subprocess.run(["git", "check-ignore", "-q", str(venv)], cwd=PEERS_DIR)
        assert ignored.returncode == 0, f"{folder}/.venv is not ignored by git"


def test_kserve_runs_its_workers_on_http_only_without_request_log_lines(tmp_path):
    peer = BY_NAME["KServe 0.21.0 (V1 protocol)"]
    command = peer.launch(peer.home, tmp_path / "model.ubj", 8123, tmp_path).command
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options["--workers"] == str(WORKERS) and options["--http_port"] == "8123"
    assert options["--model_name"] == MODEL and options["--enable_grpc"] == "false"
    assert options["--enable_latency_logging"] == "false"
    assert options["--booster"] == str(tmp_path / "model.ubj")


def test_mlserver_gets_a_model_repository_with_the_booster_beside_its_settings(tmp_path):
    peer = BY_NAME["MLServer 1.7.1 (mlserver-xgboost)"]
    booster = tmp_path / "trained.ubj"
    booster.write_bytes(b"booster")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    launch = peer.launch(peer.home, booster, 8123, scratch)
    assert launch.command[-2:] == ["start", str(scratch)]
    settings = json.loads((scratch / "settings.json").read_text())
    assert settings["http_port"] == 8123 and not settings["debug"]
    assert len({settings["http_port"], settings["grpc_port"], settings["metrics_port"]}) == 3
    assert str(scratch) in settings["metrics_dir"]
    model = json.loads((scratch / "model-settings.json").read_text())
    assert (scratch / model["parameters"]["uri"]).read_bytes() == b"booster"
