"""`mlops stack up|down|status --profile production`: PostgreSQL, SeaweedFS (S3) and MLflow's
basic-auth server, all on 127.0.0.1, state under <MLOPS_HOME>/production/.

Idempotent like the embedded stack: `up` starts what is down and waits until healthy; `down`
stops what it started, by the pids it recorded. After `up`, client.env holds what a client of
the profile needs (tracking URI and credentials, S3 endpoint, inference-log URI).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mlops.processes import ComponentStatus, recorded_pid, wait_for_server
from mlops.production import mlflow_server, postgres, seaweedfs
from mlops.production.layout import (
    INFERENCE_LOG_URI,
    MLFLOW,
    POSTGRES,
    S3,
    WEED_PORT_FLAGS,
    Layout,
    ports,
)
from mlops.production.secrets import (
    S3_ACCESS_KEY_ENV,
    S3_SECRET_KEY_ENV,
    Secrets,
    load_secrets,
    write_private,
)
from services.settings import INFERENCE_LOG_URI_ENV, TRACKING_URI_ENV, get_settings

log = logging.getLogger(__name__)

TRACKING_USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
TRACKING_PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
AWS_ENDPOINT_ENV = "AWS_ENDPOINT_URL"  # boto3, s3fs (the inference log) and DVC's S3 remote


def layout() -> Layout:
    return Layout.of(get_settings().home)


def client_env(where: Layout) -> dict[str, str]:
    """What a client of the running profile needs in its environment (as admin)."""
    secrets, known = load_secrets(where), ports(where)
    return {
        TRACKING_URI_ENV: mlflow_server.url(known),
        TRACKING_USERNAME_ENV: secrets.admin_username,
        TRACKING_PASSWORD_ENV: secrets.admin_password,
        S3_ACCESS_KEY_ENV: secrets.s3_access_key,
        S3_SECRET_KEY_ENV: secrets.s3_secret_key,
        AWS_ENDPOINT_ENV: seaweedfs.endpoint(known),
        mlflow_server.S3_ENDPOINT_ENV: seaweedfs.endpoint(known),
        INFERENCE_LOG_URI_ENV: INFERENCE_LOG_URI,
    }


# port name -> component, in the order they start (each needs the one before)
COMPONENTS = {
    POSTGRES: postgres.COMPONENT,
    S3: seaweedfs.COMPONENT,
    MLFLOW: mlflow_server.COMPONENT,
}


def _statuses(known: dict[str, int], secrets: Secrets) -> list[ComponentStatus]:
    """The components' statuses, in the order of COMPONENTS."""
    return [
        postgres.status(known[POSTGRES], secrets),
        seaweedfs.status(known, secrets),
        mlflow_server.status(known),
    ]


def up(timeout_s: float = 120.0) -> list[ComponentStatus]:
    """Start whatever of PostgreSQL, SeaweedFS and MLflow is down; wait until all are healthy."""
    where = layout()
    where.make()
    secrets = load_secrets(where)
    current = _statuses(ports(where), secrets)
    starting = [name for name, c in zip(COMPONENTS, current, strict=True) if not c.healthy]
    known = ports(where, fresh=fresh_ports(where, starting))
    if POSTGRES in starting:
        postgres.start(where, known[POSTGRES], secrets)
        _wait(lambda: postgres.ready(known[POSTGRES], secrets), where, POSTGRES, timeout_s)
        postgres.bootstrap(known[POSTGRES], secrets)
    if S3 in starting:
        seaweedfs.start(where, known, secrets)
        _wait(lambda: seaweedfs.healthy(known, secrets), where, S3, timeout_s)
    if MLFLOW in starting:
        mlflow_server.start(where, known, secrets)
        _wait(lambda: mlflow_server.status(known).healthy, where, MLFLOW, timeout_s)
    write_private(where.client_env, client_env(where))
    log.info("client environment (source it to use the profile): %s", where.client_env)
    return _statuses(known, secrets)


def fresh_ports(where: Layout, starting: list[str]) -> tuple[str, ...]:
    """The ports that may be chosen again: those of servers about to start that do not run
    (a server that runs but does not answer yet keeps its ports)."""
    stopped = [name for name in starting if recorded_pid(where.pid(COMPONENTS[name])) is None]
    return (*stopped, *(WEED_PORT_FLAGS if S3 in stopped else ()))


def _wait(check: Callable[[], bool], where: Layout, name: str, timeout_s: float) -> None:
    component = COMPONENTS[name]
    wait_for_server(check, where.pid(component), where.log(component), component, timeout_s)


def down() -> None:
    """Stop MLflow, SeaweedFS and PostgreSQL, each by the pid `up` recorded."""
    where = layout()
    for name, stop in (
        ("MLflow", mlflow_server.stop),
        ("SeaweedFS", seaweedfs.stop),
        ("PostgreSQL", postgres.stop),
    ):
        if stop(where):
            log.info("%s stopped", name)


def status() -> list[ComponentStatus]:
    """Each component's health; all down (nothing created) before the first `up`."""
    where = layout()
    if not where.ports_file.exists():
        return [ComponentStatus(name, False, "never started", True) for name in COMPONENTS.values()]
    return _statuses(ports(where), load_secrets(where))
