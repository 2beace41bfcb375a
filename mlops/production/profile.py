"""`mlops stack up|down|status --profile production`: PostgreSQL, SeaweedFS (S3), MLflow's
basic-auth server and a Ray cluster of a head and worker nodes (MLOPS_RAY_WORKER_NODES, 2 by
default), all on 127.0.0.1, state under <MLOPS_HOME>/production/.

Idempotent like the embedded stack: `up` starts what is down and waits until healthy; `down`
stops what it started, by the pids it recorded. After `up`, client.env holds what a client of
the profile needs (tracking URI and credentials, S3 endpoint, inference-log URI).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from mlops import ray_nodes, stack
from mlops.processes import ComponentStatus, recorded_pid, wait_for_server
from mlops.production import mlflow_server, postgres, seaweedfs
from mlops.production.layout import (
    DVC_BUCKET,
    INFERENCE_LOG_URI,
    MLFLOW,
    POSTGRES,
    S3,
    WEED_PORT_FLAGS,
    Layout,
    ports,
)
from mlops.production.secrets import Secrets, load_secrets, write_private
from services.settings import (
    AWS_ENDPOINT_ENV,
    INFERENCE_LOG_URI_ENV,
    MLFLOW_S3_ENDPOINT_ENV,
    S3_ACCESS_KEY_ENV,
    S3_SECRET_KEY_ENV,
    TRACKING_PASSWORD_ENV,
    TRACKING_URI_ENV,
    TRACKING_USERNAME_ENV,
    Settings,
    get_settings,
    tool,
)

log = logging.getLogger(__name__)


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
        MLFLOW_S3_ENDPOINT_ENV: seaweedfs.endpoint(known),
        INFERENCE_LOG_URI_ENV: INFERENCE_LOG_URI,
    }


DVC_REMOTE = "production"  # the profile's DVC remote, in the checkout's local (untracked) config


@contextlib.contextmanager
def as_client(repo: Path) -> Iterator[None]:
    """This process (and what it starts) a client of the running profile: client.env in the
    environment, and the DVC remote of `repo` a bucket of the S3 store; both undone after."""
    saved = dict(os.environ)
    os.environ.update(client_env(layout()))
    dvc = [tool("dvc"), "remote"]
    url = f"s3://{DVC_BUCKET}/dvc"
    add = [*dvc, "add", "--local", "--default", "--force", DVC_REMOTE, url]
    subprocess.run(add, cwd=repo, check=True, capture_output=True)
    try:
        yield
    finally:
        remove = [*dvc, "remove", "--local", DVC_REMOTE]
        subprocess.run(remove, cwd=repo, check=False, capture_output=True)
        os.environ.clear()
        os.environ.update(saved)


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


def up(with_ray: bool = True, timeout_s: float = 120.0) -> list[ComponentStatus]:
    """Start whatever of PostgreSQL, SeaweedFS, MLflow (and the Ray cluster) is down; wait
    until all are healthy."""
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
    return _statuses(known, secrets) + (ray_cluster_up() if with_ray else [])


def ray_cluster_up() -> list[ComponentStatus]:
    """The local Ray head and the worker nodes (Serve spreads replicas over them)."""
    settings = get_settings()
    head = stack.ray_up(settings)
    if not head.managed:
        return [head]
    nodes = ray_nodes.up(settings, settings.ray_worker_nodes)
    return [head, stack.metrics_status(settings), ray_nodes_status(settings, len(nodes))]


def ray_cluster_status(settings: Settings) -> list[ComponentStatus]:
    head = stack.ray_status(settings)
    if not head.managed:
        return [head]
    return [head, ray_nodes_status(settings, settings.ray_worker_nodes)]


def ray_nodes_status(settings: Settings, expected: int) -> ComponentStatus:
    running = len(ray_nodes.worker_nodes(settings))
    where = f"{running} of {expected} worker nodes on 127.0.0.1"
    return ComponentStatus("ray worker nodes", running == expected, where, True)


def fresh_ports(where: Layout, starting: list[str]) -> tuple[str, ...]:
    """The ports that may be chosen again: those of servers about to start that do not run
    (a server that runs but does not answer yet keeps its ports)."""
    stopped = [name for name in starting if recorded_pid(where.pid(COMPONENTS[name])) is None]
    return (*stopped, *(WEED_PORT_FLAGS if S3 in stopped else ()))


def _wait(check: Callable[[], bool], where: Layout, name: str, timeout_s: float) -> None:
    component = COMPONENTS[name]
    wait_for_server(check, where.pid(component), where.log(component), component, timeout_s)


def down(with_ray: bool = True) -> None:
    """Stop the Ray cluster (worker nodes, then the head), MLflow, SeaweedFS and PostgreSQL,
    each by the process (group) `up` recorded."""
    where = layout()
    if with_ray:
        settings = get_settings()
        ray_nodes.down(settings)
        stack.ray_down(settings)
    for name, stop in (
        ("MLflow", mlflow_server.stop),
        ("SeaweedFS", seaweedfs.stop),
        ("PostgreSQL", postgres.stop),
    ):
        if stop(where):
            log.info("%s stopped", name)


def status(with_ray: bool = True) -> list[ComponentStatus]:
    """Each component's health; all down (nothing created) before the first `up`."""
    where, settings = layout(), get_settings()
    cluster = ray_cluster_status(settings) if with_ray else []
    if not where.ports_file.exists():
        names = COMPONENTS.values()
        never = [ComponentStatus(name, False, "never started", True) for name in names]
        return never + cluster
    return _statuses(ports(where), load_secrets(where)) + cluster
