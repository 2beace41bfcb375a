"""Each peer server on a small fraud-detection booster (named features, categoricals marked as
training marks them): its environment made, the same predictions as the booster in-process,
and a short wrk run without errors. Needs no MLflow or Ray."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import xgboost as xgb

from benchmarks.load import run_wrk
from benchmarks.peer_servers import PEERS, peer_python, running
from mlops.sandbox import free_port
from services.datagen import generate
from services.encoding import FeatureEncoder
from services.registry_keys import BOOSTER_ARTIFACT
from services.spec import load_spec
from tests.models import model_files

pytestmark = pytest.mark.integration

SAME = 1e-6
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def booster(tmp_path_factory):
    """A fraud-detection booster file, the booster, and encoded rows to score."""
    spec = load_spec("fraud-detection")
    path = model_files(tmp_path_factory.mktemp("peers"), trees=20)[BOOSTER_ARTIFACT]
    rows = FeatureEncoder(spec).encode_frame(generate(spec, 5, 11)[spec.feature_names])
    return path, xgb.Booster(model_file=path), np.asarray(rows, dtype=np.float32)


@pytest.mark.parametrize("folder", sorted({peer.folder for peer in PEERS}))
def test_each_peer_predicts_as_the_booster_and_serves_a_short_load(folder, booster):
    """One server per folder: KServe's answers both of its protocols' peers."""
    path, trained, rows = booster
    first, *others = [peer for peer in PEERS if peer.folder == folder]
    peer_python(first)
    with running(first, path, free_port()) as url, httpx.Client(timeout=30) as client:
        for peer in (first, *others):
            predict_url = url.removesuffix(first.path) + peer.path
            for row in rows:
                response = client.post(predict_url, content=peer.body(row.tolist()), headers=JSON)
                assert response.status_code == 200, f"{peer.name}: {response.text}"
                expected = trained.inplace_predict(row[np.newaxis, :]).tolist()
                assert peer.predictions(response.content) == pytest.approx(expected, abs=SAME)
            result = run_wrk(peer.name, predict_url, peer.body(rows[0].tolist()), 2, 1)
            assert result.requests_per_s > 0 and result.non_2xx == 0, peer.name
