"""Rollouts on the real stack: every step an in-place reconfigure under load, the split and the
shadow as the manifest says, and the analysis walking a good candidate to production and
aborting one trained on corrupted labels.

The candidates are trained and registered by the pipeline's stages in a scratch copy of the
repository: `good` with another seed, `corrupted` on splits where every transaction from a
medium- or high-risk country is labelled fraud (a rule the model learns, so its own test metric
passes the promotion gates, while a fifth of its decisions differ from the stable version's).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from mlflow import MlflowClient

from mlops.sandbox import copy_repo
from monitoring.rollout_gates import DIVERGENCE
from monitoring.rollout_job import analyse_and_apply
from monitoring.rollout_result import RolloutDecision, Verdict
from services.inference_log import CANARY, REQUEST_ID, SHADOW, STABLE, VARIANT
from services.registry import PREVIOUS, PRODUCTION, aliased_number
from services.registry_keys import ROLLOUT_ABORTED_TAG
from services.settings import get_settings
from serving import rollout
from serving.manifest import manifest_path, rollouts, versions
from serving.promote import promote
from tests.load import Load, predict_body
from tests.pipeline import train_and_register
from tests.rollouts import (
    recent,
    risky_countries_are_fraud,
    rollout_policy,
    rows_of,
    send,
    wait_for_records,
)

pytestmark = pytest.mark.integration
SERVICE = "fraud-detection"


@pytest.fixture(scope="module")
def candidates(served, tmp_path_factory) -> dict[str, str]:
    tree = copy_repo(tmp_path_factory.mktemp("rollout-repo"))
    good = train_and_register(tree, SERVICE, {"params": {"seed": 11}})["version"]
    corrupted = train_and_register(tree, SERVICE, relabel=risky_countries_are_fraud)["version"]
    return {"good": good, "corrupted": corrupted}


@pytest.fixture
def stable(served, repo, candidates) -> Iterator[str]:
    """The session's version stable, with a rollout policy; afterwards the same again."""
    version = served[SERVICE]
    with rollout_policy(repo, SERVICE):
        yield version
        if SERVICE in rollouts(manifest_path()):
            rollout.abort(SERVICE, "test teardown")
        if versions(manifest_path())[SERVICE] != version:
            promote(f"{SERVICE}@v{version}", verify_timeout_s=240)


def client() -> MlflowClient:
    return MlflowClient(get_settings().tracking_uri)


def answered_between(load: Load, start: float, end: float) -> list[str | None]:
    return [version for at, version in load.outcomes if start <= at < end]


def test_every_step_is_in_place_and_routes_as_the_manifest_says(stable, candidates):
    good = candidates["good"]
    since = recent(0.01)
    with Load(SERVICE, predict_body(SERVICE), rate=150, max_s=240) as load:
        time.sleep(2)
        step = rollout.start(f"{SERVICE}@v{good}")
        assert (step.after.rollout.mode, step.after.rollout.weight) == (SHADOW, 100)
        shadow_from = time.monotonic()
        time.sleep(6)
        shadow_to = time.monotonic()
        rollout.advance(SERVICE)  # canary 10%
        canary_from = time.monotonic() + 1  # every replica reconfigured
        time.sleep(14)
        canary_to = time.monotonic()
        rollout.advance(SERVICE)  # canary 50%
        rollout.advance(SERVICE)  # completion
        time.sleep(2)
    assert load.failures == []

    shadowed = answered_between(load, shadow_from, shadow_to)
    assert set(shadowed) == {stable}, "a client got a shadow's answer"
    canary = answered_between(load, canary_from, canary_to)
    share = canary.count(good) / len(canary)
    assert abs(share - 0.10) <= 0.03, f"{share:.1%} of {len(canary)} answered by the canary"
    assert versions(manifest_path())[SERVICE] == good and rollouts(manifest_path()) == {}
    assert aliased_number(client(), SERVICE, PRODUCTION) == good
    assert aliased_number(client(), SERVICE, PREVIOUS) == stable

    # every shadowed row was scored and logged by both versions, under the same row id
    shadow_records = wait_for_records(SERVICE, good, SHADOW, len(shadowed) // 2, since)
    assert len(shadow_records) > 0
    rows = rows_of(SERVICE, since)
    by_variant = rows.groupby(REQUEST_ID)[VARIANT].agg(frozenset)
    shadow_ids = set(rows.loc[rows[VARIANT] == SHADOW, REQUEST_ID])
    assert shadow_ids and all(by_variant[i] == {STABLE, SHADOW} for i in shadow_ids)
    assert (rows[VARIANT] == CANARY).any()


def test_a_routing_key_always_gets_one_version(stable, candidates):
    rollout.start(f"{SERVICE}@v{candidates['good']}")
    rollout.advance(SERVICE)  # canary 10%
    answers = {key: send(SERVICE, 5, key=key) for key in (f"customer-{i}" for i in range(60))}
    assert all(len(versions_seen) == 1 for versions_seen in answers.values())
    canaries = sum(candidates["good"] in seen for seen in answers.values())
    assert 0 < canaries < 20  # about 10% of the keys


def test_a_good_candidate_walks_every_step_to_production_by_analysis(stable, candidates):
    good = candidates["good"]
    rollout.start(f"{SERVICE}@v{good}")
    for traffic_per_step in (220, 2_400, 480):  # >= 200 candidate requests at 100%, 10%, 50%
        since = rollouts(manifest_path())[SERVICE].since
        send(SERVICE, traffic_per_step)
        variant = rollouts(manifest_path())[SERVICE].mode
        wait_for_records(SERVICE, good, variant, 200, since)
        outcome = analyse_and_apply(SERVICE, manifest_path(), apply=True)
        assert outcome.decision == RolloutDecision.ADVANCE, outcome.markdown
    assert versions(manifest_path())[SERVICE] == good and rollouts(manifest_path()) == {}
    assert aliased_number(client(), SERVICE, PRODUCTION) == good
    assert aliased_number(client(), SERVICE, PREVIOUS) == stable


def test_a_candidate_trained_on_corrupted_labels_is_aborted_by_divergence(stable, candidates):
    corrupted = candidates["corrupted"]
    rollout.start(f"{SERVICE}@v{corrupted}")
    since = rollouts(manifest_path())[SERVICE].since
    assert send(SERVICE, 240) == {stable: 240}  # shadow: stable answers every request
    wait_for_records(SERVICE, corrupted, SHADOW, 200, since)
    outcome = analyse_and_apply(SERVICE, manifest_path(), apply=True)
    assert outcome.decision == RolloutDecision.ABORT, outcome.markdown
    divergence = outcome.analysis.gate(DIVERGENCE)
    assert divergence.verdict == Verdict.FAIL, divergence
    assert versions(manifest_path())[SERVICE] == stable and rollouts(manifest_path()) == {}
    assert aliased_number(client(), SERVICE, PRODUCTION) == stable
    tags = client().get_model_version(SERVICE, corrupted).tags
    assert tags[ROLLOUT_ABORTED_TAG] == "; ".join(outcome.analysis.reasons)[:500]
    assert send(SERVICE, 20) == {stable: 20}
