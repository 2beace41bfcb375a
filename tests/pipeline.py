"""A repository copy and the commands the pipeline runs in it, as `dvc repro` runs them
(subprocesses of this environment's tools with the copy's settings)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmarks.bench_pipeline import pipeline_env

BIN = Path(sys.executable).parent


class Pipeline:
    """A fresh repository copy and the commands the pipeline runs in it."""

    def __init__(self, root: Path, tracking_uri: str) -> None:
        self.root = root
        self.env = pipeline_env(root, tracking_uri, root / ".mlops")

    def run(self, tool: str, *args: str) -> str:
        result = subprocess.run(
            [str(BIN / tool), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{tool} {' '.join(args)} failed:\n{output}"
        return output

    def registration(self, service: str) -> dict[str, str]:
        return json.loads((self.root / f"models/{service}/registration.json").read_text())


Relabel = Callable[[pd.DataFrame], pd.DataFrame]  # a split -> the same rows, other labels


def train_and_register(
    tree: Path, service: str, model: dict | None = None, relabel: Relabel | None = None
) -> dict[str, str]:
    """dvc repro's stages for `service` in `tree` (a repository copy): a new version, trained
    with the spec's `model` settings updated by `model`, on splits relabelled by `relabel`."""
    from services.layout import ServicePaths
    from services.spec import SPEC_FILE, load_spec
    from training.data import SPLITS, ensure_snapshot, prepare
    from training.evaluate import evaluate
    from training.register import register
    from training.train import train

    path = tree / "services" / service / SPEC_FILE
    if model:
        raw = yaml.safe_load(path.read_text())
        raw["model"]["params"] |= model.pop("params", {})
        raw["model"] |= model
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLOPS_REPO_ROOT", str(tree))
        env.setenv("MLOPS_HOME", str(tree / ".mlops"))
        spec = load_spec(service)
        ensure_snapshot(spec)
        prepare(spec)
        if relabel is not None:
            for name in SPLITS:
                split = ServicePaths(service).split(name)
                relabel(pd.read_parquet(split)).to_parquet(split, index=False)
        train(spec)
        evaluate(spec)
        return register(spec)
