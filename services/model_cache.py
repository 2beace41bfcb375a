"""The node-local cache of registered versions: what replicas and batch scorers load from.

A version's entry, `<model_cache_dir>/<registry>/<service>/<version>/`, holds its artifacts
(the booster, the spec it was trained with, and the booster's ONNX conversion when registration
kept one) and `artifacts.json`, which names their files; `<registry>` is a digest of the
tracking URI (the embedded and the production stack each have a version 1). A hit reads these
files only: no MLflow import, no unpickling. A miss downloads the artifacts through MLflow
(imported then, and only then) into a temporary folder beside the entry, flushes it to the
disk and renames it into place: a process killed during a download leaves no entry (only a
`.partial-*` folder), and of replicas filling one entry at once the first rename wins. A
registered version's artifacts never change, so an entry is never refreshed: a registry rebuilt
from scratch at the same URI (its versions numbered from 1 again) needs the cache folder
removed with it (`make clean` removes both).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from services.registry_keys import BOOSTER_ARTIFACT, ONNX_ARTIFACT, SPEC_ARTIFACT
from services.scoring import ScoringModel
from services.settings import get_settings

log = logging.getLogger(__name__)
#: The artifacts every entry holds: what a `ScoringModel` needs.
ARTIFACTS = (BOOSTER_ARTIFACT, SPEC_ARTIFACT)
#: The artifacts an entry holds when the version has them.
OPTIONAL_ARTIFACTS = (ONNX_ARTIFACT,)
#: The file of an entry naming the file of each artifact; written last, read first.
INDEX_FILE = "artifacts.json"
PARTIAL_PREFIX = ".partial-"
REGISTRY_DIGITS = 12
#: Downloads a version's artifacts: (service, version, folder) -> file name of each artifact.
Fetch = Callable[[str, str, Path], dict[str, str]]


def download(service: str, version: str, folder: Path) -> dict[str, str]:
    """The cache's source: the version's artifacts from the MLflow registry."""
    from services.registry import download_model_artifacts  # MLflow: on a miss only

    return download_model_artifacts(service, version, ARTIFACTS + OPTIONAL_ARTIFACTS, folder)


def entry_dir(service: str, version: str) -> Path:
    """The folder of a version's entry (under the settings' cache folder and registry)."""
    for name in (service, version):
        if not name or name.startswith(".") or Path(name).name != name:
            raise ValueError(f"not a service or version name: {name!r}")
    settings = get_settings()
    registry = hashlib.sha256(settings.tracking_uri.encode()).hexdigest()[:REGISTRY_DIGITS]
    return settings.model_cache_dir / registry / service / version


def cached_artifacts(service: str, version: str, fetch: Fetch = download) -> dict[str, Path]:
    """The local file of each artifact of version `version`, fetched first on a miss."""
    entry = entry_dir(service, version)
    index = entry / INDEX_FILE
    if not index.exists():
        log.info("%s v%s is not in the model cache: downloading it", service, version)
        fill(entry, lambda folder: fetch(service, version, folder))
    names: dict[str, str] = json.loads(index.read_text())
    return {artifact: entry / name for artifact, name in names.items()}


def load_cached(service: str, version: str, fetch: Fetch = download) -> ScoringModel:
    """Version `version` of `service` from the node's cache (filled on a miss), scoring small
    calls with its ONNX conversion when it has one and the settings' runtime is `onnx`."""
    files = cached_artifacts(service, version, fetch)
    onnx = files.get(ONNX_ARTIFACT) if get_settings().serving_runtime == "onnx" else None
    return ScoringModel.load(files[BOOSTER_ARTIFACT], files[SPEC_ARTIFACT], onnx)


def fill(entry: Path, fetch: Callable[[Path], dict[str, str]]) -> None:
    """Create `entry` whole or not at all: `fetch` writes into a temporary folder beside it,
    which is renamed to `entry` once complete and on the disk."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=entry.parent))
    try:
        names = fetch(partial)
        missing = sorted(set(ARTIFACTS) - set(names))
        if missing:
            raise ValueError(f"{entry}: the download lacks {', '.join(missing)}")
        (partial / INDEX_FILE).write_text(json.dumps(names, indent=2, sort_keys=True) + "\n")
        _sync(*partial.iterdir(), partial)
        try:
            partial.rename(entry)
        except OSError:
            if not (entry / INDEX_FILE).exists():
                raise
            return  # another process filled it first: its copy is the same version
        _sync(entry.parent)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _sync(*paths: Path) -> None:
    """Flush files and folders (their entries) to the disk, in this order."""
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
