"""A repository copy and the commands the pipeline runs in it, as `dvc repro` runs them
(subprocesses of this environment's tools with the copy's settings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.bench_pipeline import pipeline_env

BIN = Path(sys.executable).parent


class Pipeline:
    """A fresh repository copy and the commands the pipeline runs in it."""

    def __init__(self, root: Path, tracking_uri: str, pycache: Path) -> None:
        self.root = root
        self.env = pipeline_env(root, tracking_uri, root / ".mlops", pycache)

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
