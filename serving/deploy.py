"""Reconcile a Ray cluster to the manifest, and report what runs (Ray's Serve REST API)."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from services.ray_access import TOKEN_ENV, TOKEN_PATH_ENV, auth_headers, token_path
from services.settings import (
    API_KEY_ENV,
    AWS_ENDPOINT_ENV,
    INFERENCE_LOG_URI_ENV,
    LOG_DURABILITY_ENV,
    LOG_WAL_DIR_ENV,
    MLFLOW_S3_ENDPOINT_ENV,
    MODEL_CACHE_DIR_ENV,
    REQUEST_TELEMETRY_ENV,
    S3_ACCESS_KEY_ENV,
    S3_SECRET_KEY_ENV,
    SERVING_RUNTIME_ENV,
    TRACKING_PASSWORD_ENV,
    TRACKING_URI_ENV,
    TRACKING_USERNAME_ENV,
    get_settings,
)
from serving.manifest import deployable, load

if TYPE_CHECKING:  # Ray's schema module imports Ray: read at run time, inside functions
    from ray.serve.schema import ApplicationDetails, DeploymentDetails

RUNTIME_ENV_VARS = (
    TRACKING_URI_ENV,
    TRACKING_USERNAME_ENV,
    TRACKING_PASSWORD_ENV,
    INFERENCE_LOG_URI_ENV,
    S3_ACCESS_KEY_ENV,  # an inference log and artifacts on S3
    S3_SECRET_KEY_ENV,
    AWS_ENDPOINT_ENV,
    MLFLOW_S3_ENDPOINT_ENV,
    API_KEY_ENV,
    REQUEST_TELEMETRY_ENV,
)


class DeployError(RuntimeError):
    """The cluster could not be brought to the manifest's state."""


@dataclass(frozen=True)
class DeploymentState:
    """A deployment as Ray reports it, with its live replicas counted by state."""

    status: str  # ray.serve.schema.DeploymentStatus: HEALTHY, UPDATING, UPSCALING...
    message: str
    replicas: dict[str, int]  # ray.serve.schema.ReplicaState -> count, e.g. {"RUNNING": 2}
    target_replicas: int

    @classmethod
    def of(cls, details: DeploymentDetails) -> DeploymentState:
        counts = Counter(replica.state.value for replica in details.replicas)
        return cls(
            details.status.value,
            details.message,
            dict(sorted(counts.items())),
            details.target_num_replicas,
        )


@dataclass
class AppStatus:
    name: str
    status: str  # ray.serve.schema.ApplicationStatus: RUNNING, DEPLOYING, DEPLOY_FAILED...
    message: str
    deployments: dict[str, DeploymentState] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, details: ApplicationDetails, health: dict[str, Any] | None = None) -> AppStatus:
        deployments = {name: DeploymentState.of(d) for name, d in details.deployments.items()}
        return cls(details.name, details.status.value, details.message, deployments, health or {})


def _api(path: str = "") -> str:
    return f"{get_settings().dashboard_url}/api/serve/applications/{path}"


REFUSED = (401, 403)  # Ray's token authentication: no token, a wrong token


def _auth() -> dict[str, str]:
    return auth_headers(get_settings())


def _unreachable(exc: httpx.HTTPError) -> DeployError:
    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in REFUSED:
        return _refused(exc.response)
    return DeployError(
        f"Ray dashboard {get_settings().dashboard_url} is not reachable "
        f"({exc}); start it with `mlops stack up` or set RAY_ADDRESS"
    )


def _refused(response: httpx.Response) -> DeployError:
    settings = get_settings()
    return DeployError(
        f"the Ray dashboard {settings.dashboard_url} refused this client "
        f"({response.status_code}: {response.text.strip()[:120]}): give it the cluster's token "
        f"in {TOKEN_ENV} or in the file {TOKEN_PATH_ENV} names (now {token_path(settings)})"
    )


def runtime_env_vars() -> dict[str, str]:
    """What replicas must know of the deployer's environment (not committed in the manifest)."""
    settings = get_settings()
    values = {
        TRACKING_URI_ENV: settings.tracking_uri,
        INFERENCE_LOG_URI_ENV: settings.inference_log_uri,
        LOG_WAL_DIR_ENV: str(settings.log_wal_dir),
        LOG_DURABILITY_ENV: settings.log_durability,
        SERVING_RUNTIME_ENV: settings.serving_runtime,
        MODEL_CACHE_DIR_ENV: str(settings.model_cache_dir),
    }
    values |= {k: os.environ[k] for k in RUNTIME_ENV_VARS if k in os.environ and k not in values}
    return values


def deploy(path: Path, timeout_s: float = 240.0) -> list[AppStatus]:
    """PUT the manifest's deployable applications to the cluster and wait until they run."""
    return deploy_config(deployable(load(path)), f"the manifest {path}", timeout_s)


def deploy_config(config: dict[str, Any], what: str, timeout_s: float) -> list[AppStatus]:
    """PUT a Ray Serve config (every application the cluster is to run, `what` in errors),
    each application given the deployer's environment, and wait until they run."""
    env = runtime_env_vars()
    for app in config["applications"]:
        app.setdefault("runtime_env", {}).setdefault("env_vars", {}).update(env)
    try:
        response = httpx.put(_api(), json=config, headers=_auth(), timeout=60)
    except httpx.HTTPError as exc:
        raise _unreachable(exc) from None
    if response.status_code in REFUSED:
        raise _refused(response)
    if response.status_code >= 400:
        raise DeployError(f"Ray rejected {what}: {response.text[-800:]}")
    return wait_until_running([a["name"] for a in config["applications"]], timeout_s)


def applications() -> dict[str, ApplicationDetails]:
    """Ray's answer to GET /api/serve/applications/, parsed with its published schema."""
    from ray.serve.schema import ServeInstanceDetails

    try:
        response = httpx.get(_api(), headers=_auth(), timeout=30)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise _unreachable(exc) from None
    try:
        return ServeInstanceDetails.model_validate(response.json()).applications
    except ValidationError as exc:
        raise DeployError(
            f"the Ray dashboard {get_settings().dashboard_url} answered outside the schema of "
            f"this environment's Ray (another Ray version on the cluster?): {exc}"
        ) from None


def _running(app: ApplicationDetails) -> bool:
    from ray.serve.schema import ApplicationStatus, DeploymentStatus

    return app.status == ApplicationStatus.RUNNING and all(
        d.status == DeploymentStatus.HEALTHY for d in app.deployments.values()
    )


def wait_until_running(names: list[str], timeout_s: float) -> list[AppStatus]:
    from ray.serve.schema import ApplicationStatus

    failures = (ApplicationStatus.DEPLOY_FAILED, ApplicationStatus.UNHEALTHY)
    deadline = time.monotonic() + timeout_s
    while True:
        current = applications()
        failed = [a for a in current.values() if a.status in failures]
        if failed:
            raise DeployError("; ".join(f"{a.name}: {a.status.value} {a.message}" for a in failed))
        running = all(n in current and _running(current[n]) for n in names)
        if running and set(current) <= set(names):  # and removed applications are gone
            return [AppStatus.of(app) for _, app in sorted(current.items())]
        if time.monotonic() > deadline:
            states = {n: current[n].status.value if n in current else "missing" for n in names}
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
    return [
        AppStatus.of(app, app_health(name) if with_health else None)
        for name, app in sorted(applications().items())
    ]
