"""Promotion against a real Ray cluster: in-place swap under load, refusals change nothing."""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient

from services.registry import PRODUCTION
from services.registry_keys import metric_tag
from services.settings import get_settings
from services.spec import load_spec
from serving.manifest import manifest_path, versions
from serving.promote import PromotionError, promote
from tests.load import Load, predict_body, served_state

pytestmark = pytest.mark.integration
SERVICE = "fraud-detection"


def test_promotion_under_load_drops_nothing_and_switches_version(served, second_version):
    first = served[SERVICE]
    with Load(SERVICE, predict_body(SERVICE)) as load:
        time.sleep(2)
        promote(f"{SERVICE}@v{second_version}")
        time.sleep(2)
    assert load.failures == []
    assert load.versions[first] > 0 and load.versions[second_version] > 0
    assert versions(manifest_path())[SERVICE] == second_version
    client = MlflowClient(get_settings().tracking_uri)
    assert client.get_model_version_by_alias(SERVICE, PRODUCTION).version == second_version
    # and back (a revert is the same in-place swap)
    with Load(SERVICE, predict_body(SERVICE)) as load:
        time.sleep(1)
        promote(f"{SERVICE}@v{first}")
        time.sleep(1)
    assert load.failures == []
    assert set(load.versions) == {first, second_version}


@pytest.mark.parametrize(
    "tag",
    [
        "fraud-detection@v999",
        "fraud-detection@v0",
        "../x@v1",
        "unknown-service@v1",
        "fraud-detection@1",
        "fraud-detection",
    ],
)
def test_refused_promotions_change_nothing(served, tag):
    before = served_state(SERVICE)
    with pytest.raises(PromotionError):
        promote(tag)
    assert served_state(SERVICE) == before


def test_gate_failure_changes_nothing(served, second_version):
    client = MlflowClient(get_settings().tracking_uri)
    weak = client.get_model_version(SERVICE, second_version)
    metric = metric_tag(load_spec(SERVICE).evaluation.metric)
    client.set_model_version_tag(SERVICE, second_version, metric, "0.5")
    try:
        before = served_state(SERVICE)
        with pytest.raises(PromotionError, match="floor"):
            promote(f"{SERVICE}@v{second_version}")
        assert served_state(SERVICE) == before
    finally:
        client.set_model_version_tag(SERVICE, second_version, metric, weak.tags[metric])
