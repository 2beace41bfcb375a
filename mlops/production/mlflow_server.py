"""The MLflow server of the production profile: infra/mlflow/start.sh, run as it is.

start.sh starts `mlflow server --app-name basic-auth` on PostgreSQL (runs, registry, and the
auth app's users) with artifacts proxied to S3; this module only fills its environment:
database URIs without a password (libpq reads PGPASSWORD), the S3 endpoint, the credentials.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mlops.processes import ComponentStatus, http_ok, recorded_pid, start_server, stop_server
from mlops.production import postgres, seaweedfs
from mlops.production.layout import ARTIFACTS_URI, HOST, MLFLOW, POSTGRES, Layout
from mlops.production.secrets import Secrets
from services.settings import MLFLOW_S3_ENDPOINT_ENV, PACKAGE_REPO, tool

COMPONENT = "mlflow"
START_SCRIPT = PACKAGE_REPO / "infra" / "mlflow" / "start.sh"
WORKERS = 2  # start.sh's default, as in infra/mlflow/deployment.yaml


def url(ports: dict[str, int]) -> str:
    return f"http://{HOST}:{ports[MLFLOW]}"


def database_uri(ports: dict[str, int], database: str) -> str:
    return f"postgresql://{postgres.ROLE}@{HOST}:{ports[POSTGRES]}/{database}"


def server_env(ports: dict[str, int], secrets: Secrets) -> dict[str, str]:
    """The variables start.sh documents, for this profile's servers."""
    tracking, auth = postgres.DATABASES
    return {
        "MLFLOW_BACKEND_STORE_URI": database_uri(ports, tracking),
        "MLFLOW_AUTH_DATABASE_URI": database_uri(ports, auth),
        "MLFLOW_ARTIFACTS_DESTINATION": ARTIFACTS_URI,
        "MLFLOW_HOST": HOST,
        "MLFLOW_PORT": str(ports[MLFLOW]),
        "MLFLOW_WORKERS": str(WORKERS),
        "MLFLOW_BIN": tool("mlflow"),
        MLFLOW_S3_ENDPOINT_ENV: seaweedfs.endpoint(ports),
        # no job runner (GenAI jobs, unused): as the embedded server
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    } | secrets.mlflow_env()


def status(ports: dict[str, int]) -> ComponentStatus:
    return ComponentStatus(COMPONENT, http_ok(f"{url(ports)}/health"), url(ports), managed=True)


def start(layout: Layout, ports: dict[str, int], secrets: Secrets) -> None:
    if recorded_pid(layout.pid(COMPONENT)) is not None:
        return
    # start.sh runs `python` (its auth config) and `mlflow` of this environment
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = os.environ | {"PATH": path} | server_env(ports, secrets)
    start_server(["sh", str(START_SCRIPT)], layout.log(COMPONENT), layout.pid(COMPONENT), env)


def stop(layout: Layout) -> bool:
    return stop_server(layout.pid(COMPONENT))
