"""Reconcile a Ray cluster to the manifest, and report what runs (Ray's Serve REST API)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from services.settings import REQUEST_TELEMETRY_ENV, get_settings
from serving.manifest import deployable, load

RUNTIME_ENV_VARS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLOPS_INFERENCE_LOG_URI",
    "MLOPS_API_KEY",
    REQUEST_TELEMETRY_ENV,
)
TERMINAL_FAILURES = ("DEPLOY_FAILED", "UNHEALTHY")


class DeployError(RuntimeError):
    """The cluster could not be brought to the manifest's state."""


@dataclass
class AppStatus:
    name: str
    status: str
    message: str
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)


def _api(path: str = "") -> str:
    return f"{get_settings().dashboard_url}/api/serve/applications/{path}"


def runtime_env_vars() -> dict[str, str]:
    """What replicas must know of the deployer's environment (not committed in the manifest)."""
    settings = get_settings()
    values = {
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "MLOPS_INFERENCE_LOG_URI": settings.inference_log_uri,
    }
    values |= {k: os.environ[k] for k in RUNTIME_ENV_VARS if k in os.environ and k not in values}
    return values


def deploy(path: Path, timeout_s: float = 240.0) -> list[AppStatus]:
    """PUT the manifest's deployable applications to the cluster and wait until they run."""
    config = deployable(load(path))
    env = runtime_env_vars()
    for app in config["applications"]:
        app.setdefault("runtime_env", {}).setdefault("env_vars", {}).update(env)
    try:
        response = httpx.put(_api(), json=config, timeout=60)
    except httpx.HTTPError as exc:
        raise DeployError(
            f"Ray dashboard {get_settings().dashboard_url} is not reachable "
            f"({exc}); start it with `mlops stack up` or set RAY_ADDRESS"
        ) from None
    if response.status_code >= 400:
        raise DeployError(f"Ray rejected the manifest {path}: {response.text[-800:]}")
    return wait_until_running([a["name"] for a in config["applications"]], timeout_s)


def applications() -> dict[str, Any]:
    response = httpx.get(_api(), timeout=30)
    response.raise_for_status()
    return dict(response.json().get("applications") or {})


def wait_until_running(names: list[str], timeout_s: float) -> list[AppStatus]:
    deadline = time.monotonic() + timeout_s
    while True:
        current = status(with_health=False)
        by_name = {app.name: app for app in current}
        failed = [a for a in current if a.status in TERMINAL_FAILURES]
        if failed:
            raise DeployError("; ".join(f"{a.name}: {a.status} {a.message}" for a in failed))
        running = all(by_name.get(n) and by_name[n].status == "RUNNING" for n in names) and all(
            d["status"] == "HEALTHY" for n in names for d in by_name[n].deployments.values()
        )
        if running and set(by_name) <= set(names):  # and removed applications are gone
            return current
        if time.monotonic() > deadline:
            states = {n: by_name[n].status if n in by_name else "missing" for n in names}
            raise DeployError(f"applications not running after {timeout_s:.0f}s: {states}")
        time.sleep(1.0)


def app_health(name: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """The application's /health answer (one replica's view)."""
    try:
        response = httpx.get(f"{get_settings().serve_url}/{name}/health", timeout=timeout_s)
        return dict(response.json()) | {"http_status": response.status_code}
    except (httpx.HTTPError, ValueError) as exc:
        return {"ready": False, "error": str(exc)}


def status(with_health: bool = True) -> list[AppStatus]:
    """Applications, their deployments' status and replicas, and (optionally) health."""
    result = []
    for name, app in sorted(applications().items()):
        deployments = {
            dep_name: {
                "status": dep.get("status"),
                "message": dep.get("message", ""),
                "replicas": dep.get("replica_states", {}),
            }
            for dep_name, dep in (app.get("deployments") or {}).items()
        }
        result.append(
            AppStatus(
                name,
                app.get("status", "?"),
                app.get("message", ""),
                deployments,
                app_health(name) if with_health else {},
            )
        )
    return result
