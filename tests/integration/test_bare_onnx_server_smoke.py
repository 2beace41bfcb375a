"""The practical limit on ONNX Runtime: the bare server, started from the runtimes' environment
as the serving benchmark starts it, answers what XGBoost answers and takes a short wrk run.

Needs no MLflow server or Ray cluster: a small booster is trained here on generated rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import xgboost as xgb

from benchmarks.bench_model_limit import bare_onnx_command
from benchmarks.load import run_wrk
from benchmarks.servers import server
from mlops.sandbox import free_port
from services.datagen import generate
from services.encoding import FeatureEncoder
from services.onnx_scoring import TOLERANCE
from services.registry_keys import BOOSTER_ARTIFACT
from services.schema import frame_to_records
from services.spec import load_spec
from serving.protocol import PREDICTIONS, RECORDS
from tests.models import model_files

pytestmark = pytest.mark.integration
SPEC = load_spec("fraud-detection")


@pytest.fixture(scope="module")
def booster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small booster on generated rows, categoricals marked as training marks them."""
    return model_files(tmp_path_factory.mktemp("onnx"), trees=20)[BOOSTER_ARTIFACT]


@pytest.fixture(scope="module")
def url(booster: Path) -> Iterator[str]:
    port = free_port()
    command, env = bare_onnx_command(booster, port, workers=2)
    url = f"http://127.0.0.1:{port}/predict"
    with server(command, url, env):
        yield url


def records(rows: int, seed: int) -> list[dict]:
    return frame_to_records(SPEC, generate(SPEC, rows, seed)[SPEC.feature_names])


@pytest.mark.parametrize("rows", [1, 64])
def test_predictions_are_xgboosts(url: str, booster: Path, rows: int):
    body = records(rows, 11)
    answer = httpx.post(url, json={RECORDS: body}, timeout=30)
    assert answer.status_code == 200
    expected = xgb.Booster(model_file=booster).inplace_predict(
        FeatureEncoder(SPEC).encode_records(body)
    )
    predictions = np.asarray(answer.json()[PREDICTIONS])
    assert predictions.shape == (rows,)
    assert np.max(np.abs(predictions - expected)) <= TOLERANCE


def test_a_short_wrk_run_has_no_errors(url: str):
    result = run_wrk("bare onnx", url, json.dumps({RECORDS: records(1, 3)}), 2, 1)
    assert result.requests_per_s > 0 and result.non_2xx == 0
