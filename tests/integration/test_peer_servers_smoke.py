"""Each peer server on a tiny booster: its environment made, the same predictions as the
booster in-process, and a short wrk run without errors. Needs no MLflow or Ray."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import xgboost as xgb

from benchmarks.load import run_wrk
from benchmarks.peer_servers import PEERS, peer_python, running
from mlops.sandbox import free_port

pytestmark = pytest.mark.integration

SAME = 1e-6
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def booster(tmp_path_factory):
    """A binary:logistic booster on 5 random features, saved as .ubj, and rows to score."""
    rng = np.random.default_rng(7)
    features = rng.random((400, 5), dtype=np.float32)
    labels = (features[:, 0] + features[:, 1] * features[:, 2] > 0.7).astype(int)
    params = {"objective": "binary:logistic", "nthread": 1, "max_depth": 3}
    trained = xgb.train(params, xgb.DMatrix(features, label=labels), num_boost_round=12)
    path = tmp_path_factory.mktemp("peers") / "model.ubj"
    trained.save_model(path)
    return path, trained, features[:5]


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
