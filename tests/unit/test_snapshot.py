"""Training snapshots: the default data is rebuilt from the repository alone; anything else
is pulled, and data the DVC pointer does not name is never left in place. A service without a
generator brings its own snapshot: it is pulled, or `dvc add`ed where it lies."""

from __future__ import annotations

import shutil

import pytest
import yaml
from typer.testing import CliRunner

from services.datagen import generate
from services.layout import ServicePaths, file_md5
from services.settings import PACKAGE_REPO
from services.spec import load_spec
from tests.own_data import SERVICE as OWN
from tests.own_data import add_service
from training import data
from training.data import DataError, ensure_snapshot
from training.params import ParamsError

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


def test_a_generator_service_without_generate_params_names_the_field(tree):
    paths, _ = tree
    params_file = paths.root / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    del params["services"][SERVICE]["generate"]
    params_file.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError) as caught:
        ensure_snapshot(load_spec(SERVICE))
    assert str(caught.value).startswith(f"params.yaml: services.{SERVICE}.generate: missing")
    assert "\n" not in str(caught.value)


# --- a service that brings its own data (no generate.py) ---------------------------------


@pytest.fixture
def own(tmp_path, monkeypatch):
    """A tree with one service whose folder holds only service.yaml; DVC calls recorded."""
    shutil.copy(PACKAGE_REPO / "params.yaml", tmp_path)
    snapshot = add_service(tmp_path)
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(tmp_path))
    calls: list[str] = []
    monkeypatch.setattr(data, "_dvc_pull", lambda paths: calls.append("pull") or False)
    monkeypatch.setattr(data, "_dvc_add", lambda paths: calls.append("add") or record(paths))
    return ServicePaths(OWN), snapshot, calls


def record(paths: ServicePaths) -> None:
    """What `dvc add` leaves: a pointer naming the file's md5."""
    point_at(paths, file_md5(paths.snapshot))


def test_own_snapshot_already_tracked_is_present(own):
    paths, _, calls = own
    record(paths)
    assert ensure_snapshot(load_spec(OWN)) == "present"
    assert calls == []


def test_own_snapshot_not_tracked_yet_is_added_to_dvc(own):
    _, snapshot, calls = own
    before = snapshot.read_bytes()
    how = ensure_snapshot(load_spec(OWN))
    assert how == f"added to DVC: commit data/{OWN}/snapshot.parquet.dvc (and `dvc push` the data)"
    assert calls == ["add"] and snapshot.read_bytes() == before
    assert ensure_snapshot(load_spec(OWN)) == "present"


def test_own_snapshot_named_by_its_pointer_is_pulled(own, monkeypatch):
    paths, snapshot, _ = own
    record(paths)
    content = snapshot.read_bytes()
    snapshot.unlink()  # a fresh clone: the pointer is committed, the data is in the remote

    def pull(paths: ServicePaths) -> bool:
        paths.snapshot.write_bytes(content)
        return True

    monkeypatch.setattr(data, "_dvc_pull", pull)
    assert ensure_snapshot(load_spec(OWN)) == "pulled"


def test_own_snapshot_in_no_remote_says_to_dvc_pull(own):
    paths, snapshot, calls = own
    record(paths)
    snapshot.unlink()
    with pytest.raises(DataError) as caught:
        ensure_snapshot(load_spec(OWN))
    message = str(caught.value)
    assert f"run `dvc pull data/{OWN}/snapshot.parquet.dvc` once its remote is reachable" in message
    assert "\n" not in message and calls == ["pull"]
    assert not snapshot.exists()


def test_own_service_without_any_data_says_where_to_put_it(tmp_path, monkeypatch):
    shutil.copy(PACKAGE_REPO / "params.yaml", tmp_path)
    add_service(tmp_path, snapshot=False)
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(tmp_path))
    with pytest.raises(DataError, match=rf"data/{OWN}/snapshot.parquet: not found and services/"):
        ensure_snapshot(load_spec(OWN))


def test_changed_own_snapshot_is_kept_and_the_way_to_record_it_said(own):
    paths, snapshot, calls = own
    point_at(paths, "0" * 32)  # the file changed since the pointer was written
    before = snapshot.read_bytes()
    how = ensure_snapshot(load_spec(OWN))
    assert how.startswith("present but not the data")
    assert f"`dvc add data/{OWN}/snapshot.parquet`" in how
    assert calls == [] and snapshot.read_bytes() == before


def test_data_init_reports_each_service_and_fails_on_a_missing_one(own):
    from mlops.cli import app

    paths, snapshot, _ = own
    record(paths)
    snapshot.unlink()
    shutil.copytree(PACKAGE_REPO / "services" / SERVICE, paths.root / "services" / SERVICE)
    result = CliRunner().invoke(app, ["data", "init"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0] == f"{SERVICE}: snapshot generated"
    assert lines[1].startswith(f"error: {OWN}: data/{OWN}/snapshot.parquet: not present")
    assert len(lines) == 2 and "Traceback" not in result.output
