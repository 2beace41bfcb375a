"""`mlops demo` end to end in a fresh copy: v1 served, drift, one retrain PR, v2 served."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from mlops.sandbox import copy_repo
from monitoring.monitor import MonitorOptions, monitor_service
from services.inference_log import MODEL_VERSION
from services.registry import PRODUCTION
from services.settings import get_settings

pytestmark = pytest.mark.e2e
SERVICE = "fraud-detection"
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
ONE_MINUTE_PER_STEP = "min_minutes: 1 "  # the rollout policy in the service's spec


def without_minutes_per_step(root: Path) -> None:
    """Each rollout step of the copy is judged once it has its requests and labels: the loop
    is tested, not the clock (`make demo` keeps its minute; tests/unit/test_rollout_gates.py
    covers the rule). Committed, so the retrain branch carries it too."""
    spec = root / "services" / SERVICE / "service.yaml"
    text = spec.read_text()
    assert text.count(ONE_MINUTE_PER_STEP) == 1, f"{spec} no longer has {ONE_MINUTE_PER_STEP!r}"
    spec.write_text(text.replace(ONE_MINUTE_PER_STEP, "min_minutes: 0 "))
    subprocess.run([*GIT, "commit", "-qam", "No minimum minutes per step"], cwd=root, check=True)


@pytest.fixture
def demo_repo(request: pytest.FixtureRequest, tmp_path: Path, mlflow_server: str, ray_cluster: str):
    """A fresh copy of the repository as the demo's working tree; the session's is restored,
    and so are its applications when another test runs after this one."""
    saved = {k: os.environ.get(k) for k in ("MLOPS_REPO_ROOT", "MLOPS_HOME")}
    root = copy_repo(tmp_path / "demo")
    without_minutes_per_step(root)
    os.environ["MLOPS_REPO_ROOT"], os.environ["MLOPS_HOME"] = str(root), str(root / ".mlops")
    yield root
    for key, value in saved.items():
        os.environ[key] = value or ""
    # tests/conftest.py runs this test last, so the copy's applications serve until the session
    # removes them or stops Ray. Another order (`--failed-first`, `--new-first`) may put tests
    # after it: they get the session's applications back.
    if request.node is not request.session.items[-1]:
        from serving.deploy import deploy
        from serving.manifest import manifest_path

        deploy(manifest_path())


def test_demo_closes_the_loop(demo_repo):
    from mlops.demo import run_demo

    state = run_demo()
    client = MlflowClient(get_settings().tracking_uri)
    latest = max(int(v.version) for v in client.search_model_versions(f"name = '{SERVICE}'"))
    assert state.versions[SERVICE] == str(latest)
    health = httpx.get(f"{get_settings().serve_url}/{SERVICE}/health").json()
    assert health[MODEL_VERSION] == str(latest)
    assert client.get_model_version_by_alias(SERVICE, PRODUCTION).version == str(latest)
    first = state.monitor[SERVICE]
    assert first.action == "retrain" and first.pull_request is not None
    assert Path(first.report_html).read_text().lstrip().lower().startswith("<!doctype html")

    # the same condition again: the open PR is updated, never duplicated
    again = monitor_service(SERVICE, MonitorOptions(open_pr=True, since="24h"))
    records = sorted((get_settings().home / "pull-requests").glob("*retrain*.md"))
    assert len(records) == 1, records
    assert again.pull_request is None or again.pull_request.branch == first.pull_request.branch
