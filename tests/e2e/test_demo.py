"""`mlops demo` end to end in a fresh copy: v1 served, drift, one retrain PR, v2 served."""

from __future__ import annotations

import os
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


@pytest.fixture
def demo_repo(tmp_path: Path, mlflow_server: str, ray_cluster: str):
    """A fresh copy of the repository as the demo's working tree; the session's is restored."""
    saved = {k: os.environ.get(k) for k in ("MLOPS_REPO_ROOT", "MLOPS_HOME")}
    root = copy_repo(tmp_path / "demo")
    os.environ["MLOPS_REPO_ROOT"], os.environ["MLOPS_HOME"] = str(root), str(root / ".mlops")
    yield root
    for key, value in saved.items():
        os.environ[key] = value or ""
    from serving.deploy import deploy
    from serving.manifest import manifest_path

    deploy(manifest_path())  # the session's applications again


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
