"""`mlops serve status` on a running cluster shows the replicas Ray reports, by state."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from services.settings import get_settings, tool
from serving.manifest import REALTIME
from tests.load import deploy_with_replicas, restore_manifest

pytestmark = pytest.mark.integration
SERVICE = "fraud-detection"


def run(*command: str) -> str:
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"COLUMNS": "200"},  # rich wraps table cells to the terminal width
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def ray_replica_states() -> dict[str, dict[str, int]]:
    """Replicas by state of every application's Realtime deployment, from Ray's own CLI."""
    status = yaml.safe_load(run(tool("serve"), "status", "--address", get_settings().dashboard_url))
    return {
        name: app["deployments"][REALTIME]["replica_states"]
        for name, app in status["applications"].items()
    }


@pytest.fixture
def two_replicas(served: dict[str, str], tmp_path: Path) -> Iterator[None]:
    """fraud-detection's Realtime deployment held at two replicas, then the manifest again."""
    deploy_with_replicas(SERVICE, tmp_path, 2)
    try:
        yield
    finally:
        restore_manifest(SERVICE, tmp_path)


def test_serve_status_shows_the_replicas_ray_reports(two_replicas):
    reported = ray_replica_states()
    assert reported[SERVICE] == {"RUNNING": 2}

    shown = {
        app["name"]: app for app in json.loads(run(tool("mlops"), "serve", "status", "--json"))
    }
    assert set(shown) == set(reported)
    assert shown[SERVICE]["deployments"][REALTIME]["replicas"] == reported[SERVICE]
    assert shown[SERVICE]["deployments"][REALTIME]["target_replicas"] == 2

    table = run(tool("mlops"), "serve", "status")
    assert f"{REALTIME}: HEALTHY (running=2)" in table, table
