"""Shared fixtures: a copy of the repository, a real MLflow server, registered models.

Integration and e2e tests never touch the developer's checkout or local stack: they work in
a copy of the working tree (MLOPS_REPO_ROOT) with their own state folder (MLOPS_HOME) and an
MLflow server on a free port.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops.sandbox import copy_repo, free_port
from services.ray_access import AUTH_MODE_ENV, LOOPBACK_ENV, auth_headers, use_in_this_process
from services.settings import get_settings
from services.spec import load_catalogue, load_spec
from tests.production import ProductionStack, production_stack

# Ray reads these when it is imported: the local head binds loopback only (Ray must not swap
# 127.0.0.1 for the machine's address) and demands its token (its path is set once the head
# is up, in `ray_cluster`)
os.environ |= {LOOPBACK_ENV: "0", AUTH_MODE_ENV: "token"}
# How often Ray's processes export metrics to the node's Prometheus endpoint (Ray's
# metrics_report_interval_ms, 10 s by default): a head the session starts does it every 2 s,
# so the telemetry tests wait less for their counts
METRICS_REPORT_ENV = "RAY_metrics_report_interval_ms"
RAY_DEFAULT_METRICS_REPORT_MS = 10_000
SESSION_METRICS_REPORT_MS = 2_000
DEMO_TESTS = Path(__file__).parent / "e2e" / "test_demo.py"


def pytest_itemcollected(item: pytest.Item) -> None:
    """A test that uses the session's Ray cluster is marked `cluster` (from its fixtures, as
    it is collected: before `-m` selects), so that `make test` runs the tests of the machine's
    one cluster in one session and every other test in a second session beside it."""
    if "ray_cluster" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.cluster)


@pytest.hookimpl(trylast=True)  # after pytest's own reordering
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The demo's test runs last, every other test in its collected order: the demo leaves
    the applications of its own repository copy serving (tests/e2e/test_demo.py)."""
    items.sort(key=lambda item: item.path == DEMO_TESTS)


def metrics_report_s() -> float:
    """Seconds between two metrics exports of the session's Ray processes: the environment's
    interval (`ray_cluster` sets it for a head it starts), else Ray's default."""
    return int(os.environ.get(METRICS_REPORT_ENV, RAY_DEFAULT_METRICS_REPORT_MS)) / 1000


def name_on_main(service: str, version: str | None) -> None:
    """Make the manifest on main (a commit in the repository copy) name `version` of
    `service`, as a merged pull request does; the cluster and the aliases are left alone."""
    from serving.gitops import commit_version

    commit_version(service, version, f"{service}: the manifest names v{version}")


@pytest.fixture(scope="session")
def session_env() -> Iterator[dict[str, str]]:
    """Environment changes for the whole session, undone at the end."""
    saved = dict(os.environ)
    yield os.environ  # type: ignore[misc]
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory, session_env: dict[str, str]) -> Path:
    """A private copy of the repository that the pipeline reads and writes."""
    root = copy_repo(tmp_path_factory.mktemp("repo"))
    session_env["MLOPS_REPO_ROOT"] = str(root)
    session_env["MLOPS_HOME"] = str(root / ".mlops")
    return root


@pytest.fixture(scope="session")
def mlflow_server(repo: Path, session_env: dict[str, str]) -> Iterator[str]:
    """A real `mlflow server` (SQLite + local artifacts) on a free port."""
    from mlops import stack

    session_env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{free_port()}"
    settings = get_settings()
    status = stack.mlflow_up(settings, timeout_s=300)
    assert status.healthy
    yield settings.tracking_uri
    stack.mlflow_down(settings)


@pytest.fixture(scope="session")
def registered(mlflow_server: str) -> dict[str, str]:
    """Version 1 of every service, trained by the pipeline's stage functions in the copy."""
    from training.data import ensure_snapshot, prepare
    from training.evaluate import evaluate
    from training.register import register
    from training.train import train

    versions = {}
    for name, spec in load_catalogue().items():
        ensure_snapshot(spec)
        prepare(spec)
        train(spec)
        evaluate(spec)
        versions[name] = register(spec)["version"]
    return versions


@pytest.fixture(scope="session")
def ray_cluster(repo: Path, session_env: dict[str, str]) -> Iterator[str]:
    """A real local Ray head (reused when one is already up, its Serve apps removed at the
    end; a head the session started is stopped)."""
    import httpx

    from mlops import stack

    settings = get_settings()
    # one test session at a time may own the machine's Ray cluster (ports are fixed)
    with open("/tmp/mlops-ray-tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        was_running = stack.ray_status(settings).healthy
        if not was_running:  # `ray start` passes its environment on to every Ray process
            session_env.setdefault(METRICS_REPORT_ENV, str(SESSION_METRICS_REPORT_MS))
        assert stack.ray_up(settings, timeout_s=180).healthy
        use_in_this_process(settings)  # the head's token, for Ray's clients started from here
        yield settings.dashboard_url
        if was_running:
            # a graceful delete: replicas flush their inference logs in __del__
            httpx.delete(
                f"{settings.dashboard_url}/api/serve/applications/",
                headers=auth_headers(settings),
                timeout=120,
            )
        else:  # `ray stop --force`: no test reads the logs after this
            stack.ray_down(settings)


@pytest.fixture(scope="session")
def served(registered: dict[str, str], ray_cluster: str) -> dict[str, str]:
    """Every service's registered version promoted and served from the copy's manifest."""
    from serving.promote import promote

    for service, version in registered.items():
        promote(f"{service}@v{version}", verify_timeout_s=240)
    return registered


@pytest.fixture(scope="session")
def second_version(served: dict[str, str]) -> str:
    """Another registered version of fraud-detection (same pipeline outputs, new version)."""
    from training.register import register

    return register(load_spec("fraud-detection"))["version"]


@pytest.fixture(scope="session")
def production() -> Iterator[ProductionStack]:
    """`mlops stack up --profile production`: PostgreSQL, SeaweedFS and MLflow's basic-auth
    server on free loopback ports under a temporary MLOPS_HOME; `down` at the end."""
    with production_stack() as stack:
        yield stack
