"""Traffic in the manifest and the routing of requests during a rollout (no Ray)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import pytest

from services.inference_log import CANARY, SHADOW, STABLE
from services.settings import PACKAGE_REPO
from services.spec import SpecError, parse_spec
from serving import manifest
from serving.manifest import ManifestError
from serving.routing import ROLLOUT_KEY, RolloutTraffic, Route, Router

pytestmark = pytest.mark.unit
SERVICE = "fraud-detection"
KEYS = [f"customer-{i}" for i in range(20_000)]


def canary(weight: float, candidate: str = "2") -> RolloutTraffic:
    return RolloutTraffic(candidate=candidate, mode=CANARY, weight=weight, step=2)


@pytest.mark.parametrize("weight", [1, 10, 33.3, 50, 90])
def test_the_split_over_20000_keys_is_within_1_5_points_of_the_weight(weight):
    router = Router(canary(weight))
    share = sum(router.route(key).answer == CANARY for key in KEYS) / len(KEYS)
    assert abs(share * 100 - weight) <= 1.5


def test_one_key_always_gets_one_variant_on_every_replica():
    replicas = [Router(canary(10)) for _ in range(3)]
    for key in KEYS[:2_000]:
        answers = {replica.route(key).answer for replica in replicas for _ in range(3)}
        assert len(answers) == 1


def test_requests_without_a_key_are_split_exactly():
    router = Router(canary(10))
    answers = [router.route(None).answer for _ in range(1_000)]
    assert answers.count(CANARY) == 100
    assert answers[:10].count(CANARY) == 1  # spread, not bunched


def test_a_shadow_is_answered_by_stable_and_shadows_its_weight():
    router = Router(RolloutTraffic(candidate="2", mode=SHADOW, weight=100, step=1))
    assert {router.route(key) for key in KEYS[:500]} == {Route(STABLE, shadow=True)}
    half = Router(RolloutTraffic(candidate="2", mode=SHADOW, weight=50, step=1))
    shadowed = sum(half.route(None).shadow for _ in range(1_000))
    assert shadowed == 500


def test_without_a_rollout_every_request_goes_to_stable():
    router = Router(None)
    assert {router.route(key) for key in [None, *KEYS[:100]]} == {Route(STABLE)}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"candidate": "2", "mode": "canary", "weight": 100}, "less than 100%"),
        ({"candidate": "2", "mode": "blue", "weight": 10}, "mode"),
        ({"candidate": "x", "mode": "canary", "weight": 10}, "candidate"),
        ({"candidate": "2", "mode": "shadow", "weight": 0}, "weight"),
        ({"candidate": "2", "mode": "shadow", "weight": 10, "colour": 1}, "colour"),
    ],
)
def test_invalid_traffic_is_refused_with_the_field(raw, message):
    with pytest.raises(ValueError, match=message):
        RolloutTraffic.parse(raw, "applications[0]")


@pytest.fixture
def manifest_file(tmp_path):
    path = tmp_path / "production.yaml"
    shutil.copy(manifest.manifest_path(), path)
    manifest.set_model_version(path, SERVICE, "1")
    return path


def test_a_rollout_is_named_in_the_realtime_user_config_only(manifest_file):
    traffic = RolloutTraffic(
        candidate="2", mode=CANARY, weight=10, step=2, since=datetime(2026, 6, 1, tzinfo=UTC)
    )
    manifest.set_model_version(manifest_file, SERVICE, "1", traffic)
    assert manifest.rollouts(manifest_file) == {SERVICE: traffic}
    app = manifest.application(manifest.load(manifest_file), SERVICE)
    configs = {d["name"]: dict(d["user_config"]) for d in app["deployments"]}
    assert configs[manifest.BATCH] == {manifest.MODEL_VERSION_KEY: "1"}  # /batch stays stable
    assert configs[manifest.REALTIME][ROLLOUT_KEY]["weight"] == 10
    assert "# GitOps manifest" in manifest_file.read_text()  # comments kept
    assert manifest.drift_from_catalogue(manifest_file) == []  # traffic is not drift
    manifest.sync_with_catalogue(manifest_file)
    assert manifest.rollouts(manifest_file) == {SERVICE: traffic}
    manifest.set_model_version(manifest_file, SERVICE, "1", None)
    assert manifest.rollouts(manifest_file) == {}


def _edit_realtime(path, service, **user_config):
    doc = manifest.load(path)
    app = manifest.application(doc, service)
    for deployment in app["deployments"]:
        if deployment["name"] == manifest.REALTIME:
            deployment["user_config"].update(user_config)
    path.write_text(manifest.dump(doc))


@pytest.mark.parametrize(
    ("user_config", "message"),
    [
        ({ROLLOUT_KEY: {"candidate": "1", "mode": "canary", "weight": 10}}, "different stable"),
        ({ROLLOUT_KEY: {"candidate": "2", "mode": "canary", "weight": 150}}, r"rollout\.weight"),
        ({ROLLOUT_KEY: {"candidate": "2", "mode": "canary"}}, r"rollout\.weight"),
    ],
)
def test_invalid_traffic_in_the_manifest_is_refused_with_the_field(
    manifest_file, user_config, message
):
    _edit_realtime(manifest_file, SERVICE, **user_config)
    with pytest.raises(ManifestError, match=message):
        manifest.load(manifest_file)


def test_a_rollout_without_a_stable_version_is_refused(manifest_file):
    _edit_realtime(
        manifest_file,
        "demand-forecast",
        **{ROLLOUT_KEY: {"candidate": "2", "mode": "shadow", "weight": 5}},
    )
    with pytest.raises(ManifestError, match="different stable model_version"):
        manifest.load(manifest_file)


def test_a_rollout_on_the_batch_deployment_is_refused(manifest_file):
    doc = manifest.load(manifest_file)
    batch = next(
        d for d in manifest.application(doc, SERVICE)["deployments"] if d["name"] == manifest.BATCH
    )
    batch["user_config"][ROLLOUT_KEY] = {"candidate": "2", "mode": "canary", "weight": 10}
    manifest_file.write_text(manifest.dump(doc))
    with pytest.raises(ManifestError, match="only the Realtime deployment routes"):
        manifest.load(manifest_file)


def _spec_with(promotion: dict) -> dict:
    import yaml

    raw = yaml.safe_load((PACKAGE_REPO / "services" / SERVICE / "service.yaml").read_text())
    raw["promotion"] = promotion
    return raw


def test_a_rollout_policy_is_read_from_the_spec():
    raw = _spec_with(
        {
            "rollout": {
                "steps": [{"mode": "shadow", "weight": 100}, {"mode": "canary", "weight": 10}],
                "min_requests": 300,
                "gates": {"max_latency_ratio": 2},
            }
        }
    )
    rollout = parse_spec(raw, "service.yaml").promotion.rollout
    assert [(s.mode, s.weight) for s in rollout.steps] == [("shadow", 100), ("canary", 10)]
    assert (rollout.min_requests, rollout.gates.max_latency_ratio) == (300, 2)


@pytest.mark.parametrize(
    ("rollout", "message"),
    [
        ({"steps": []}, "promotion.rollout.steps"),
        ({"steps": [{"mode": "canary", "weight": 100}]}, "completion is the last step"),
        ({"steps": [{"mode": "shadow", "weight": 10}], "min_requests": 0}, "min_requests"),
        ({"steps": [{"mode": "shadow", "weight": 10}], "gates": {"confidence": 1}}, "confidence"),
    ],
)
def test_an_invalid_rollout_policy_names_the_field(rollout, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(_spec_with({"rollout": rollout}), "service.yaml")
