"""Training snapshots: the default data is rebuilt from the repository alone; anything else
is pulled, and data the DVC pointer does not name is never left in place."""

from __future__ import annotations

import shutil

import pytest
import yaml

from services.datagen import generate
from services.layout import ServicePaths, file_md5
from services.settings import PACKAGE_REPO
from services.spec import load_spec
from training import data
from training.data import DataError, ensure_snapshot

pytestmark = pytest.mark.unit

SERVICE = "fraud-detection"
ROWS, SEED = 300, 7


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A working tree whose params.yaml asks for a small default snapshot."""
    shutil.copytree(PACKAGE_REPO / "services" / SERVICE, tmp_path / "services" / SERVICE)
    params = yaml.safe_load((PACKAGE_REPO / "params.yaml").read_text())
    params["services"] = {SERVICE: params["services"][SERVICE]}
    params["services"][SERVICE]["generate"] = {"rows": ROWS, "seed": SEED}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(tmp_path))
    pulls: list[str] = []
    monkeypatch.setattr(data, "_dvc_pull", lambda paths: pulls.append(paths.service) or False)
    paths = ServicePaths(SERVICE)
    paths.snapshot.parent.mkdir(parents=True)
    return paths, pulls


def point_at(paths: ServicePaths, md5: str) -> None:
    pointer = {"outs": [{"md5": md5, "size": 1, "hash": "md5", "path": paths.snapshot.name}]}
    paths.snapshot_pointer.write_text(yaml.safe_dump(pointer))


def default_md5(paths: ServicePaths) -> str:
    probe = paths.root / "probe.parquet"
    generate(load_spec(SERVICE), ROWS, SEED).to_parquet(probe, index=False)
    return file_md5(probe)


def test_default_data_is_generated_without_a_remote(tree):
    paths, pulls = tree
    point_at(paths, default_md5(paths))
    assert ensure_snapshot(load_spec(SERVICE)) == "generated"
    assert file_md5(paths.snapshot) == default_md5(paths)
    assert pulls == []
    assert sorted(p.name for p in paths.snapshot.parent.iterdir()) == [
        "snapshot.parquet",
        "snapshot.parquet.dvc",
    ]
    assert ensure_snapshot(load_spec(SERVICE)) == "present"


def test_other_data_is_pulled_and_never_replaced_by_the_default(tree):
    paths, pulls = tree
    point_at(paths, "0" * 32)  # a retrain snapshot that only a remote holds
    with pytest.raises(DataError, match="in no reachable DVC remote") as caught:
        ensure_snapshot(load_spec(SERVICE))
    assert str(paths.snapshot_pointer) in str(caught.value)
    assert pulls == [SERVICE]
    assert list(paths.snapshot.parent.iterdir()) == [paths.snapshot_pointer]


def test_a_pulled_snapshot_is_used(tree, monkeypatch):
    paths, _ = tree
    point_at(paths, "0" * 32)

    def pull(paths: ServicePaths) -> bool:
        paths.snapshot.write_bytes(b"pulled")
        return True

    monkeypatch.setattr(data, "_dvc_pull", pull)
    assert ensure_snapshot(load_spec(SERVICE)) == "pulled"
    assert paths.snapshot.read_bytes() == b"pulled"
