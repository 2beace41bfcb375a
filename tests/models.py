"""Small models of catalogue services, built without the pipeline or MLflow: a booster file, the
spec file, and the node cache's source serving them; and what a fresh process loading one
imports (for tests of loading and scoring)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import xgboost as xgb

from services.datagen import generate
from services.model_cache import Fetch
from services.onnx_scoring import convert
from services.registry_keys import BOOSTER_ARTIFACT, ONNX_ARTIFACT, SPEC_ARTIFACT
from services.settings import PACKAGE_REPO
from services.spec import SPEC_FILE, load_spec
from training.train import frame_matrix


def model_files(
    folder: Path, service: str = "fraud-detection", trees: int = 5, onnx: bool = False
) -> dict[str, Path]:
    """A booster of `trees` trees on generated rows (in `folder`) and its service's spec file;
    with `onnx`, the booster's ONNX conversion too (unchecked)."""
    spec = load_spec(service)
    booster = xgb.train(spec.model.params, frame_matrix(spec, generate(spec, 300, 1)), trees)
    booster_path = folder / "model.ubj"
    booster.save_model(booster_path)
    files = {BOOSTER_ARTIFACT: booster_path, SPEC_ARTIFACT: spec.folder / SPEC_FILE}
    if onnx:
        files[ONNX_ARTIFACT] = folder / "model.onnx"
        files[ONNX_ARTIFACT].write_bytes(convert(booster))
    return files


def copying(files: dict[str, Path], calls: list[str] | None = None) -> Fetch:
    """A cache source that copies `files` (artifact -> path); each call appends to `calls`."""

    def fetch(service: str, version: str, folder: Path) -> dict[str, str]:
        if calls is not None:
            calls.append(f"{service}/{version}")
        for path in files.values():
            shutil.copy(path, folder / path.name)
        return {artifact: path.name for artifact, path in files.items()}

    return fetch


def packages_imported(script: str, *args: str) -> set[str]:
    """The top-level packages a fresh interpreter has imported after running `script` (with
    `args` in sys.argv, this process's environment)."""
    report = "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    result = subprocess.run(
        [sys.executable, "-c", script + report, *args],
        cwd=PACKAGE_REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.splitlines()[-1]))
