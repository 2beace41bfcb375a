"""The node-local model cache: a miss fills an entry whole or not at all, a hit fetches nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services import model_cache
from services.model_cache import INDEX_FILE, PARTIAL_PREFIX, cached_artifacts, entry_dir, fill
from services.registry import RegistryUnavailable
from services.registry_keys import BOOSTER_ARTIFACT, SPEC_ARTIFACT
from services.settings import MODEL_CACHE_DIR_ENV, TRACKING_URI_ENV
from tests.models import copying, model_files

pytestmark = pytest.mark.unit
SERVICE = "fraud-detection"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(MODEL_CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(TRACKING_URI_ENV, "http://127.0.0.1:9")  # nothing answers there
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return model_files(tmp_path_factory.mktemp("model"))


def leftovers(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.name.startswith(PARTIAL_PREFIX)]


def test_a_miss_fetches_the_version_once_and_later_loads_hit(cache, files):
    calls: list[str] = []
    first = cached_artifacts(SERVICE, "3", copying(files, calls))
    second = cached_artifacts(SERVICE, "3", copying(files, calls))
    assert calls == [f"{SERVICE}/3"]
    assert first == second
    assert set(first) == {BOOSTER_ARTIFACT, SPEC_ARTIFACT}
    for artifact, path in first.items():
        assert path.parent == entry_dir(SERVICE, "3") and path.is_relative_to(cache)
        assert path.read_bytes() == files[artifact].read_bytes()
    assert not leftovers(cache)


def test_a_hit_loads_with_the_registry_down_and_a_miss_asks_the_registry(cache, files):
    cached_artifacts(SERVICE, "3", copying(files))
    assert model_cache.load_cached(SERVICE, "3").spec.name == SERVICE  # MLflow is not reachable
    with pytest.raises(RegistryUnavailable):
        model_cache.load_cached(SERVICE, "4")
    assert not entry_dir(SERVICE, "4").exists()


def test_a_failed_download_leaves_no_entry_and_the_next_load_fetches_again(cache, files):
    def dies_midway(service: str, version: str, folder: Path) -> dict[str, str]:
        path = files[BOOSTER_ARTIFACT]
        (folder / path.name).write_bytes(path.read_bytes()[:100])  # a part of the booster
        raise ConnectionError("the registry went away")

    with pytest.raises(ConnectionError):
        cached_artifacts(SERVICE, "3", dies_midway)
    assert not entry_dir(SERVICE, "3").exists()
    assert not leftovers(cache)
    calls: list[str] = []
    cached_artifacts(SERVICE, "3", copying(files, calls))
    assert calls == [f"{SERVICE}/3"]


def test_a_folder_left_by_a_killed_process_is_no_entry(cache, files):
    """A process killed mid-download leaves its temporary folder, never the entry."""
    entry = entry_dir(SERVICE, "3")
    entry.parent.mkdir(parents=True)
    killed = entry.parent / f"{PARTIAL_PREFIX}dead"
    killed.mkdir()
    (killed / "model.ubj").write_bytes(b"half")
    calls: list[str] = []
    cached_artifacts(SERVICE, "3", copying(files, calls))
    assert calls == [f"{SERVICE}/3"]
    assert json.loads((entry / INDEX_FILE).read_text()) == {
        artifact: path.name for artifact, path in files.items()
    }


def test_a_download_that_lacks_an_artifact_is_refused(cache, files):
    only_booster = {BOOSTER_ARTIFACT: files[BOOSTER_ARTIFACT]}
    with pytest.raises(ValueError, match=SPEC_ARTIFACT):
        cached_artifacts(SERVICE, "3", copying(only_booster))
    assert not entry_dir(SERVICE, "3").exists()


def test_two_loaders_filling_one_entry_at_once_agree(cache, files):
    """The second to finish finds the entry taken: it keeps the first copy, raises nothing."""
    entry = entry_dir(SERVICE, "3")
    fetch = copying(files)

    def races(folder: Path) -> dict[str, str]:
        fill(entry, lambda other: fetch(SERVICE, "3", other))  # the other loader wins
        (entry / "winner").touch()
        return fetch(SERVICE, "3", folder)

    fill(entry, races)
    assert (entry / "winner").exists()
    assert not leftovers(cache)


def test_registries_have_entries_of_their_own(cache, monkeypatch):
    """Version 1 of the embedded stack is not version 1 of the production stack."""
    embedded = entry_dir(SERVICE, "1")
    monkeypatch.setenv(TRACKING_URI_ENV, "http://127.0.0.1:5001")
    assert entry_dir(SERVICE, "1") != embedded
    assert entry_dir(SERVICE, "1").parent.parent.parent == embedded.parent.parent.parent == cache


@pytest.mark.parametrize("service, version", [(SERVICE, "../2"), ("..", "1"), (SERVICE, "")])
def test_names_that_are_not_a_plain_folder_are_refused(cache, service, version):
    with pytest.raises(ValueError, match="not a service or version name"):
        entry_dir(service, version)
