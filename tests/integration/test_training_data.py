"""Data checks on the pipeline's prepared splits (written by the `prepare` stage)."""

from __future__ import annotations

import pandas as pd
import pytest

from services.layout import ServicePaths
from services.schema import validate_frame
from services.spec import load_spec
from training.data import SPLITS
from training.params import load_params

pytestmark = pytest.mark.integration

SERVICES = ["fraud-detection", "demand-forecast"]


@pytest.fixture(scope="module")
def splits(registered):
    """service -> {split name -> frame}, as `prepare` wrote them in the repository copy."""
    return {
        service: {name: pd.read_parquet(ServicePaths(service).split(name)) for name in SPLITS}
        for service in SERVICES
    }


def row_hashes(frame: pd.DataFrame) -> set[int]:
    return set(pd.util.hash_pandas_object(frame, index=False).tolist())


@pytest.mark.parametrize("service", SERVICES)
def test_splits_are_disjoint_and_cover_the_snapshot(splits, service):
    parts = splits[service]
    snapshot = pd.read_parquet(ServicePaths(service).snapshot)
    hashes = {name: row_hashes(frame) for name, frame in parts.items()}
    assert not hashes["train"] & hashes["valid"]
    assert not hashes["train"] & hashes["test"]
    assert not hashes["valid"] & hashes["test"]
    assert sum(len(frame) for frame in parts.values()) == len(snapshot)
    spec = load_spec(service)
    whole = snapshot[[*spec.feature_names, spec.target]]
    assert set().union(*hashes.values()) == row_hashes(whole)


@pytest.mark.parametrize("service", SERVICES)
def test_split_sizes_follow_params(splits, service):
    split = load_params(service).split
    total = sum(len(frame) for frame in splits[service].values())
    assert len(splits[service]["test"]) / total == pytest.approx(split.test, abs=0.002)
    assert len(splits[service]["valid"]) / total == pytest.approx(split.valid, abs=0.002)


@pytest.mark.parametrize("service", SERVICES)
def test_splits_hold_valid_rows_with_the_spec_columns(splits, service):
    spec = load_spec(service)
    for name, frame in splits[service].items():
        assert list(frame.columns) == [*spec.feature_names, spec.target], name
        assert validate_frame(spec, frame) == [], name


def test_fraud_rate_is_stratified_across_splits(splits):
    rates = {name: frame["is_fraud"].mean() for name, frame in splits["fraud-detection"].items()}
    assert 0.01 < rates["train"] < 0.2
    for name in ("valid", "test"):
        assert rates[name] == pytest.approx(rates["train"], abs=0.002), rates


def test_demand_target_is_alike_across_splits(splits):
    parts = splits["demand-forecast"]
    train = parts["train"]["units_sold"]
    for name in ("valid", "test"):
        other = parts[name]["units_sold"]
        assert other.mean() == pytest.approx(train.mean(), rel=0.05)
        assert other.median() == pytest.approx(train.median(), rel=0.1)


@pytest.mark.parametrize("service", SERVICES)
def test_every_category_is_seen_in_training(splits, service):
    train = splits[service]["train"]
    for f in load_spec(service).features:
        if f.type == "categorical":
            assert set(train[f.name]) == set(f.categories or ()), f.name


@pytest.mark.parametrize("service", SERVICES)
def test_snapshot_is_the_tracked_version(splits, service, repo):
    from services.layout import file_md5

    paths = ServicePaths(service)
    assert paths.root == repo
    assert file_md5(paths.snapshot) == paths.recorded_md5
