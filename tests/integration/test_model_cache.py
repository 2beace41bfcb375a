"""The node-local model cache against a real MLflow server: a miss downloads a registered
version's artifacts, the model loaded from them predicts exactly as the registered pyfunc
(within the ONNX tolerance for single records), and a hit loads without importing MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import pytest

from services.datagen import generate
from services.model_cache import INDEX_FILE, entry_dir, load_cached
from services.onnx_scoring import TOLERANCE
from services.registry import model_uri
from services.registry_keys import BOOSTER_ARTIFACT, ONNX_ARTIFACT, SPEC_ARTIFACT
from services.schema import frame_to_records
from services.settings import MODEL_CACHE_DIR_ENV
from services.spec import load_spec
from tests.models import packages_imported

pytestmark = pytest.mark.integration
SERVICES = ["fraud-detection", "demand-forecast"]
# A replica restarted on a node that has its version
LOAD_FROM_CACHE = """
import sys
from services.model_cache import load_cached
load_cached(sys.argv[1], sys.argv[2])
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(MODEL_CACHE_DIR_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize(
    ("service", "onnx"), [("fraud-detection", True), ("demand-forecast", False)]
)
def test_a_miss_downloads_the_booster_and_spec_and_predicts_as_the_pyfunc(
    registered, mlflow_server, cache, service, onnx
):
    version = registered[service]
    model = load_cached(service, version)
    entry = entry_dir(service, version)
    assert entry.is_relative_to(cache)
    names = json.loads((entry / INDEX_FILE).read_text())
    assert set(names) == {BOOSTER_ARTIFACT, SPEC_ARTIFACT} | ({ONNX_ARTIFACT} if onnx else set())
    assert {p.name for p in entry.iterdir()} == {INDEX_FILE, *names.values()}  # nothing else
    spec = load_spec(service)
    frame = generate(spec, 2_000, seed=5)[spec.feature_names]
    pyfunc = mlflow.pyfunc.load_model(model_uri(service, version))
    pd.testing.assert_frame_equal(
        pyfunc.predict(frame), model.predict_frame(frame), check_exact=True
    )
    head = frame.head(100)
    single = [model.predict_records([r])[0] for r in frame_to_records(spec, head)]  # /predict
    booster = model.booster.inplace_predict(model.encoder.encode_frame(head))
    assert model.runtime == ("onnx" if onnx else "xgboost")
    assert single == pytest.approx(booster.tolist(), abs=TOLERANCE)


def test_a_hit_loads_without_mlflow(registered, mlflow_server, cache):
    service = SERVICES[0]
    load_cached(service, registered[service])  # the miss
    assert "mlflow" not in packages_imported(LOAD_FROM_CACHE, service, registered[service])
