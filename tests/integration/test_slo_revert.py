"""A slow version promoted on healthy traffic: the monitor proposes the revert because of latency.

Two versions are trained and registered by the pipeline's own stages in a scratch copy of the
repository: `fast` with the shipped spec (early stopping keeps a few dozen trees), `slow` with
deeper trees and a step so small that its validation logloss improves at every one of
thousands of trees (AUC, a ranking, would plateau and stop it early): about as good a model
(the promotion gate checks it), fifty times the trees.
Both are promoted in turn (gates, manifest commit, deploy) and get the same healthy traffic;
the monitor's SLO rule then names the latency. The production version of the session is
promoted back at the end.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from mlflow import MlflowClient

from mlops.sandbox import copy_repo
from monitoring.monitor import MonitorOptions, monitor_service
from monitoring.pull_requests import LocalOpener
from monitoring.requests import read_requests
from services.inference_log import MODEL_VERSION
from services.registry import PREVIOUS, PRODUCTION, aliased_number
from services.settings import get_settings
from services.spec import SPEC_FILE, load_spec
from serving.manifest import manifest_path, versions
from serving.promote import promote
from tests.load import predict_body

pytestmark = pytest.mark.integration
SERVICE = "fraud-detection"
ROWS_PER_REQUEST = 500  # XGBoost's cost grows with rows x trees: a clear gap per request
REQUESTS = 210  # above min_requests (200) for both versions
SLOW_ROUNDS = 4_000  # at depth 8: ~160 ms per 500-row request on one core (shipped: ~5 ms)
SLOW_PARAMS = {"eta": 0.0015, "max_depth": 8, "eval_metric": "logloss"}


def train_and_register(tree: Path, model: dict | None = None) -> dict[str, str]:
    """dvc repro's stages for the service in `tree` (a repository copy): a new version,
    trained with the spec's `model` settings updated by `model`."""
    from training.data import ensure_snapshot, prepare
    from training.evaluate import evaluate
    from training.register import register
    from training.train import train

    path = tree / "services" / SERVICE / SPEC_FILE
    if model:
        raw = yaml.safe_load(path.read_text())
        raw["model"]["params"] |= model.pop("params", {})
        raw["model"] |= model
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLOPS_REPO_ROOT", str(tree))
        env.setenv("MLOPS_HOME", str(tree / ".mlops"))
        spec = load_spec(SERVICE)
        ensure_snapshot(spec)
        prepare(spec)
        train(spec)
        evaluate(spec)
        return register(spec)


def send(count: int) -> dict[str, int]:
    """`count` healthy requests of ROWS_PER_REQUEST rows; the versions that answered."""
    body = httpx.Request("POST", "/", json=predict_body(SERVICE, ROWS_PER_REQUEST, seed=9))
    answered: dict[str, int] = {}
    with httpx.Client(base_url=get_settings().serve_url, timeout=60) as http:
        for _ in range(count):
            response = http.post(
                f"/{SERVICE}/predict",
                content=body.content,
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 200, response.text[:300]
            version = response.json()["model_version"]
            answered[version] = answered.get(version, 0) + 1
    return answered


def logged(version: str, expected: int, timeout_s: float = 30.0) -> None:
    """Wait until the replicas flushed `expected` request records of `version`."""
    deadline, since = time.monotonic() + timeout_s, datetime.now(UTC) - timedelta(hours=1)
    while time.monotonic() < deadline:
        frame = read_requests(get_settings().inference_log_uri, SERVICE, since)
        if (frame[MODEL_VERSION].astype(str) == version).sum() >= expected:
            return
        time.sleep(1)
    raise AssertionError(f"fewer than {expected} request records of v{version} were logged")


@pytest.fixture(scope="module")
def fast_then_slow(served, tmp_path_factory, repo) -> Iterator[tuple[str, str]]:
    client = MlflowClient(get_settings().tracking_uri)
    original = versions(manifest_path())[SERVICE]
    saved_previous = aliased_number(client, SERVICE, PREVIOUS)
    tree = copy_repo(tmp_path_factory.mktemp("slow-repo"))
    fast = train_and_register(tree)["version"]
    registered = train_and_register(
        tree,
        {"num_boost_round": SLOW_ROUNDS, "early_stopping_rounds": 100, "params": SLOW_PARAMS},
    )
    slow = registered["version"]
    assert int(registered["booster_trees"]) > SLOW_ROUNDS // 2, registered
    try:
        promote(f"{SERVICE}@v{fast}", verify_timeout_s=240)
        assert send(REQUESTS) == {fast: REQUESTS}
        logged(fast, REQUESTS)
        promote(f"{SERVICE}@v{slow}", verify_timeout_s=240)
        assert send(REQUESTS) == {slow: REQUESTS}
        logged(slow, REQUESTS)
        yield fast, slow
    finally:
        promote(f"{SERVICE}@v{original}", verify_timeout_s=240)
        if saved_previous:
            client.set_registered_model_alias(SERVICE, PREVIOUS, saved_previous)
        else:
            client.delete_registered_model_alias(SERVICE, PREVIOUS)
        subprocess.run(["git", "branch", "-D", f"monitor/{SERVICE}/revert"], cwd=repo, check=False)


def test_the_slow_version_is_reverted_because_of_its_latency(fast_then_slow, repo, tmp_path):
    fast, slow = fast_then_slow
    client = MlflowClient(get_settings().tracking_uri)
    assert aliased_number(client, SERVICE, PRODUCTION) == slow
    assert aliased_number(client, SERVICE, PREVIOUS) == fast
    opener = LocalOpener(repo=repo, records=tmp_path / "pull-requests")

    result = monitor_service(SERVICE, MonitorOptions(open_pr=True, opener=opener))

    summary = json.loads(result.summary_json.read_text())
    by_role = {v["role"]: v for v in summary["slo"]["versions"]}
    assert (by_role["production"]["version"], by_role["previous"]["version"]) == (slow, fast)
    assert by_role["production"]["status"] == "breached"
    assert by_role["previous"]["status"] == "met"
    assert by_role["production"]["p99_latency_ms"] > 100 > by_role["previous"]["p99_latency_ms"]
    assert summary["decision"] == "revert"
    reason = summary["reasons"][0]
    assert f"v{slow} breaches its SLO: p99 latency" in reason
    assert f"which previous v{fast} met" in reason
    assert summary["measured"]["feature_drift_share"] < 0.3  # the data did not change
    print(
        f"p99 v{fast} {by_role['previous']['p99_latency_ms']:.1f} ms, "
        f"v{slow} {by_role['production']['p99_latency_ms']:.1f} ms"
    )

    record = json.loads(
        (tmp_path / "pull-requests" / f"monitor__{SERVICE}__revert.json").read_text()
    )
    manifest = subprocess.run(
        ["git", "show", f"{record['branch']}:infra/serve/production.yaml"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    app = next(a for a in yaml.safe_load(manifest)["applications"] if a["name"] == SERVICE)
    assert {d["user_config"]["model_version"] for d in app["deployments"]} == {fast}
    assert "p99 latency" in Path(record["body_path"]).read_text()
