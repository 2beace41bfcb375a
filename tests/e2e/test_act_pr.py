"""ci.yml on a pull_request event, run by the real act binary (host mode, offline).

A fresh copy of the repository gets a pull-request branch that changes one hyperparameter of
fraud-detection; `make act-pr` runs there against the session's MLflow server. act copies
that tree again for the job, which installs the locked environment, lints, runs the unit
tests, retrains with `dvc repro` and writes the metrics report to the job summary. The
outcomes are read from act's JSON log and from the MLflow server.

The job's unit-test step runs one module of the unit suite (pytest's PYTEST_ADDOPTS names
it): the step is what is tested here, and this session runs the whole suite itself.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from mlops.sandbox import copy_repo, free_port
from services.registry_keys import GIT_COMMIT_TAG
from services.spec import service_names
from tests.act import ActLog, use_this_environment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# Variables of this test process that must not reach the workflow's steps (act's host mode
# passes its own environment on): the job works on its own copy, with no token.
PRIVATE = ("MLOPS_REPO_ROOT", "VIRTUAL_ENV", "GITHUB_TOKEN", "GH_TOKEN", "PYTEST_ADDOPTS")
CHANGED = "fraud-detection"
# The one unit-test module the job runs (see the docstring)
JOB_UNIT_TESTS = "tests/unit/test_workflows.py"


def versions(client: MlflowClient, service: str) -> set[str]:
    return {v.version for v in client.search_model_versions(f"name = '{service}'")}


def git(work: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args]
    return subprocess.run(command, cwd=work, capture_output=True, text=True, check=True).stdout


def open_pull_request(work: Path) -> None:
    """Branch `retrain` off main with a shallower fraud-detection model (a one-line change)."""
    spec = work / "services" / CHANGED / "service.yaml"
    depth = int(yaml.safe_load(spec.read_text())["model"]["params"]["max_depth"])
    new_depth = depth - 1 if depth > 3 else depth + 1
    text, count = re.subn(
        r"^(\s+max_depth:\s*)\d+", rf"\g<1>{new_depth}", spec.read_text(), count=1, flags=re.M
    )
    assert count == 1
    git(work, "checkout", "-q", "-b", "retrain")
    spec.write_text(text)
    git(work, "commit", "-qam", f"{CHANGED}: max_depth {depth} -> {new_depth}")


def metric_rows(summary: str, service: str) -> list[list[str]]:
    rows = [line.split("|")[1:-1] for line in summary.splitlines() if line.startswith("| metrics/")]
    return [
        [c.strip() for c in row] for row in rows if row[0].strip().startswith(f"metrics/{service}/")
    ]


def test_pull_request_runs_ci_under_act(mlflow_server: str, tmp_path: Path):
    work = copy_repo(tmp_path / "repo")
    open_pull_request(work)
    use_this_environment(work)
    home = tmp_path / "mlops-home"
    client = MlflowClient(tracking_uri=mlflow_server)
    services = service_names()
    before = {name: versions(client, name) for name in services}

    env = {k: v for k, v in os.environ.items() if k not in PRIVATE and not k.startswith("PYTEST_")}
    env |= {
        "MLOPS_HOME": str(home),
        "MLFLOW_TRACKING_URI": mlflow_server,
        "RAY_ADDRESS": f"127.0.0.1:{free_port()}",  # not used by ci.yml: nothing listens there
        "ACT_ARGS": f"--json --action-cache-path {tmp_path / 'act-cache'}",
        "PYTEST_ADDOPTS": JOB_UNIT_TESTS,
    }
    result = subprocess.run(
        ["make", "-s", "act-pr"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
    )
    (tmp_path / "act.log").write_text(result.stdout + result.stderr)
    log = ActLog(result.stdout)
    context = f"act log: {tmp_path / 'act.log'}\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}"
    assert result.returncode == 0, context

    # Every step of the job ran and succeeded; the GitHub-only comment job did nothing.
    for step in (
        "Set up the locked environment",
        "Lint (ruff)",
        "Unit tests",
        "Use the DVC remote in MLOPS_HOME",
        "Training data (dvc pull, or rebuild the default data)",
        "Retrain and register (dvc repro)",
        "Report metrics and registered versions",
    ):
        assert log.results.get(step) == "success", (step, log.results, context)
    assert "All checks passed!" in log.text("Lint (ruff)")
    assert re.search(r"\b\d+ passed\b", log.text("Unit tests")), log.text("Unit tests")
    remote_listing = "".join(log.text("Use the DVC remote in MLOPS_HOME").split())
    assert str(home / "dvc-remote") in remote_listing  # dvc wraps long paths
    repro = log.text("Retrain and register (dvc repro)")
    for name in services:
        assert f"Running stage 'register@{name}'" in repro, repro[-2000:]

    # A new model version per service, registered in this MLflow server from the PR's commit.
    head = git(work, "rev-parse", "HEAD").strip()
    new: dict[str, str] = {}
    for name in services:
        added = versions(client, name) - before[name]
        assert len(added) == 1, (name, added)
        new[name] = added.pop()
        tags = client.get_model_version(name, new[name]).tags
        assert tags[GIT_COMMIT_TAG] == head

    # The job summary: the `dvc metrics diff` table against the base and the new versions.
    summary = "".join(log.summary)
    assert "`dvc metrics diff` against" in summary, summary
    assert re.search(r"^\|\s*Path\s*\|\s*Metric\s*\|", summary, re.M), summary
    for name in services:
        rows = metric_rows(summary, name)  # path, metric, main, workspace, change
        assert rows and all(len(row) == 5 for row in rows), summary
        changed = [row for row in rows if row[2] != row[3]]
        assert bool(changed) == (name == CHANGED), (name, rows)
        assert re.search(rf"^\| {re.escape(name)} \| {new[name]} \| ", summary, re.M), summary

    # act worked on its own copy: this copy's working tree is as it was.
    assert not (work / "models").exists() and not (work / ".dvc" / "config.local").exists()
    assert git(work, "status", "--porcelain") == ""
