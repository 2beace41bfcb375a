"""`mlops batch-score`: scorer actors on the cluster score files with the serving model code,
like /batch does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from services.datagen import generate
from services.inference_log import MODEL_VERSION, PROBABILITY
from services.onnx_scoring import TOLERANCE
from services.settings import get_settings
from services.spec import load_spec
from serving.protocol import PREDICTIONS

pytestmark = pytest.mark.integration
SERVICE = "fraud-detection"
MLOPS = str(Path(sys.executable).parent / "mlops")


def batch_score(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it: its own process and Ray driver, bounded in time."""
    command = [MLOPS, "batch-score", "--service", SERVICE, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_batch_score_writes_the_same_predictions_as_the_endpoint(served, tmp_path):
    spec = load_spec(SERVICE)
    frame = generate(spec, 3_000, seed=21)[spec.feature_names]
    source = tmp_path / "input.parquet"
    frame.to_parquet(source, index=False)

    done = batch_score("--input", str(source), "--output", str(tmp_path / "out"))

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rows"] == 3_000 and result["version"] == served[SERVICE]
    scored = pd.read_parquet(tmp_path / "out")
    assert len(scored) == 3_000 and set(scored[MODEL_VERSION]) == {served[SERVICE]}
    head = frame.head(20)
    response = httpx.post(
        f"{get_settings().serve_url}/{SERVICE}/batch",
        content=head.to_csv(index=False),
        headers={"content-type": "text/csv"},
        timeout=60,
    )
    online = [p[PROBABILITY] for p in response.json()[PREDICTIONS]]
    offline = scored.merge(head.reset_index(), on=list(head.columns)).sort_values("index")
    # the endpoint scores 20 rows with the ONNX conversion, the command large batches with
    # XGBoost: the same within the conversion's tolerance
    assert offline[PROBABILITY].tolist() == pytest.approx(online, abs=TOLERANCE)


def test_batch_score_disconnects_the_driver_it_connected(served, tmp_path):
    """Ray prints raylet warnings on the driver's stdout: none may follow the command's JSON."""
    import ray

    from serving.batch_score import batch_score as score

    spec = load_spec(SERVICE)
    source = tmp_path / "input.parquet"
    generate(spec, 500, seed=22)[spec.feature_names].to_parquet(source, index=False)

    result = score(SERVICE, str(source), str(tmp_path / "out"), address=get_settings().ray_address)

    assert result["rows"] == 500
    assert not ray.is_initialized()


def test_batch_score_names_a_version_its_scorers_cannot_load_and_leaves_no_output(served, tmp_path):
    spec = load_spec(SERVICE)
    source = tmp_path / "input.parquet"
    generate(spec, 100, seed=24)[spec.feature_names].to_parquet(source, index=False)

    done = batch_score("--version", "999", "--input", str(source), "--output", str(tmp_path / "o"))

    assert done.returncode != 0
    assert "error:" in done.stderr and "999" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "o").exists()


def test_batch_score_names_a_missing_input_and_writes_nothing(served, tmp_path):
    done = batch_score("--input", str(tmp_path / "absent.parquet"), "--output", str(tmp_path / "o"))

    assert done.returncode != 0
    assert "absent.parquet" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "o").exists()


def test_batch_score_names_an_invalid_value_and_leaves_no_output(served, tmp_path):
    spec = load_spec(SERVICE)
    source = tmp_path / "in"
    source.mkdir()
    frame = generate(spec, 2_000, seed=23)[spec.feature_names]
    frame.to_parquet(source / "a.parquet", index=False)
    frame.loc[1_500, "amount"] = 10**9  # above the spec's max
    frame.to_parquet(source / "b.parquet", index=False)

    done = batch_score("--input", str(source), "--output", str(tmp_path / "out"))

    assert done.returncode != 0
    assert "b.parquet, row group 0: 1 invalid values" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "out").exists()  # all or nothing: a.parquet's part is gone too
