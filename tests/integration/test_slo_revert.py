"""A slow version promoted on healthy traffic: the monitor proposes the revert because of latency.

Two versions are trained and registered by the pipeline's own stages in a scratch copy of the
repository: `fast` with the shipped spec (early stopping keeps a few dozen trees), `slow` with
deeper trees and a step so small that its validation logloss improves at every one of
thousands of trees (AUC, a ranking, would plateau and stop it early): about as good a model
(the promotion gate checks it), fifty times the trees.
Both are promoted in turn (gates, manifest commit, deploy) and get the same healthy traffic;
the monitor's SLO rule then names the latency. Rolled out in shadow behind the fast one, the
slow version is aborted by the rollout's latency gate. The production version of the session is
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
from monitoring.rollout_gates import LATENCY
from monitoring.rollout_job import analyse_and_apply
from monitoring.rollout_result import RolloutDecision, Verdict
from services.inference_log import MODEL_VERSION, SHADOW
from services.registry import PREVIOUS, PRODUCTION, aliased_number
from services.registry_keys import ROLLOUT_ABORTED_TAG
from services.settings import get_settings
from serving import rollout
from serving.manifest import manifest_path, rollouts, versions
from serving.promote import promote
from tests.load import predict_body
from tests.pipeline import train_and_register
from tests.rollouts import rollout_policy, wait_for_records

pytestmark = pytest.mark.integration
SERVICE = "fraud-detection"
ROWS_PER_REQUEST = 500  # XGBoost's cost grows with rows x trees: a clear gap per request
REQUESTS = 210  # above min_requests (200) for both versions
SLOW_ROUNDS = 4_000  # at depth 8: ~160 ms per 500-row request on one core (shipped: ~5 ms)
SLOW_PARAMS = {"eta": 0.0015, "max_depth": 8, "eval_metric": "logloss"}


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
    fast = train_and_register(tree, SERVICE)["version"]
    registered = train_and_register(
        tree,
        SERVICE,
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
    print(
        f"p99 v{fast} {by_role['previous']['p99_latency_ms']:.1f} ms, "
        f"v{slow} {by_role['production']['p99_latency_ms']:.1f} ms"
    )
    assert (by_role["production"]["version"], by_role["previous"]["version"]) == (slow, fast)
    assert by_role["production"]["status"] == "breached"
    assert by_role["previous"]["status"] == "met"
    assert by_role["production"]["p99_latency_ms"] > 100 > by_role["previous"]["p99_latency_ms"]
    assert summary["decision"] == "revert"
    reason = summary["reasons"][0]
    assert f"v{slow} breaches its SLO: p99 latency" in reason
    assert f"which previous v{fast} met" in reason
    assert summary["measured"]["feature_drift_share"] < 0.3  # the data did not change

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


def test_a_slow_candidate_in_shadow_is_aborted_by_the_latency_gate(fast_then_slow, repo):
    """The same two versions as a rollout: the fast one stable, the slow one shadowing it."""
    fast, slow = fast_then_slow
    client = MlflowClient(get_settings().tracking_uri)
    promote(f"{SERVICE}@v{fast}", verify_timeout_s=240)
    with rollout_policy(repo, SERVICE):
        rollout.start(f"{SERVICE}@v{slow}", verify_timeout_s=240)
        try:
            since = rollouts(manifest_path())[SERVICE].since
            assert send(REQUESTS) == {fast: REQUESTS}  # stable answers, the shadow only logs
            wait_for_records(SERVICE, slow, SHADOW, REQUESTS, since, timeout_s=120)
            outcome = analyse_and_apply(SERVICE, manifest_path(), apply=True)
        finally:
            if SERVICE in rollouts(manifest_path()):
                rollout.abort(SERVICE, "test teardown")
    latency = outcome.analysis.gate(LATENCY)
    print(latency.text)
    assert outcome.decision == RolloutDecision.ABORT, outcome.markdown
    assert latency.verdict == Verdict.FAIL, latency
    assert versions(manifest_path())[SERVICE] == fast and rollouts(manifest_path()) == {}
    assert aliased_number(client, SERVICE, PRODUCTION) == fast
    assert "latency" in client.get_model_version(SERVICE, slow).tags[ROLLOUT_ABORTED_TAG]
