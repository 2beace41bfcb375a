"""The local stack: a real MLflow server and a real Ray head node, started in the background.
The production profile (PostgreSQL, S3, MLflow's basic-auth server) is mlops/production/.

Idempotent: `up` starts what is down and waits until healthy; `down` stops what runs.
Nothing is started for a part the environment points elsewhere (MLFLOW_TRACKING_URI,
RAY_ADDRESS set to a remote address).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess

from mlops.processes import (
    ComponentStatus,
    http_ok,
    listening,
    start_server,
    stop_server,
    wait_until,
)
from services.ray_access import LOOPBACK_HOSTS, client_env, ensure_token
from services.settings import PACKAGE_REPO, Settings, StackProfile, get_settings, tool
from serving.k8s import HAPROXY_THREADS_ENV, SERVING_ENV, THROUGHPUT_ENV, haproxy_threads

log = logging.getLogger(__name__)
HAPROXY_STATE_DIR = "/tmp/haproxy-serve/"  # Ray Serve's default HAProxy config folder
# Ray Serve 2.60 binds HAProxy's stats and Prometheus frontends to every interface, with no
# setting for the host: the local stack starts haproxy through this wrapper, which rewrites
# those two binds to loopback in the config Serve wrote, then runs the real binary.
HAPROXY_LOOPBACK = PACKAGE_REPO / "infra" / "haproxy" / "haproxy-loopback"
HAPROXY_REAL_BINARY_ENV = "MLOPS_HAPROXY_BINARY"  # the haproxy the wrapper runs
# Logical CPUs the local head declares: twice the cores. Serve replicas ask 0.25 each and
# `mlops batch-score`'s scorers 0.5, so at one per core a job could find no room beside
# scaled-up replicas; real CPU use stays bounded by nthread=1 per model.
LOCAL_LOGICAL_CPUS = 2 * (os.cpu_count() or 1)
# The local head's node address: Ray's Prometheus endpoint (and its other per-node servers)
# bind loopback only when the node is 127.0.0.1, all interfaces otherwise.
LOCAL_NODE_IP = "127.0.0.1"


def _is_local(host_port: str) -> bool:
    return any(h in host_port for h in LOOPBACK_HOSTS)


# --- MLflow -------------------------------------------------------------------------------


def mlflow_status(settings: Settings) -> ComponentStatus:
    uri = settings.tracking_uri
    return ComponentStatus("mlflow", http_ok(f"{uri}/health"), uri, _is_local(uri))


def mlflow_up(settings: Settings, timeout_s: float = 60.0) -> ComponentStatus:
    status = mlflow_status(settings)
    if status.healthy or not status.managed:
        return status
    root = settings.home / "mlflow"
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = [
        tool("mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.mlflow_port),
        "--workers",
        "1",
    ]
    # no job runner: its huey consumers (GenAI jobs, unused here) cost 7 processes,
    # about 1.8 GiB and seconds of CPU at every start
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    start_server(command, logs / "mlflow.log", settings.home / "mlflow.pid", env)
    wait_until(
        lambda: mlflow_status(settings).healthy,
        f"MLflow server (log: {logs / 'mlflow.log'})",
        timeout_s,
    )
    return mlflow_status(settings)


def mlflow_down(settings: Settings) -> None:
    if stop_server(settings.home / "mlflow.pid"):
        wait_until(lambda: not mlflow_status(settings).healthy, "MLflow shutdown", 30)


# --- Ray ----------------------------------------------------------------------------------


def haproxy_env() -> dict[str, str]:
    """Ray Serve's HAProxy ingress when Debian's haproxy is installed (see docs/SERVING.md),
    run through the wrapper that binds its stats and metrics frontends to loopback, on one
    thread per core this process may use (unless the environment sets the threads)."""
    binary = shutil.which("haproxy")
    if binary is None or os.environ.get("MLOPS_INGRESS", "haproxy") != "haproxy":
        return {}
    threads = haproxy_threads(len(os.sched_getaffinity(0)))
    if HAPROXY_THREADS_ENV in os.environ:
        threads = {HAPROXY_THREADS_ENV: os.environ[HAPROXY_THREADS_ENV]}
    return (
        THROUGHPUT_ENV
        | threads
        | {
            "RAY_SERVE_HAPROXY_BINARY_PATH": str(HAPROXY_LOOPBACK),
            HAPROXY_REAL_BINARY_ENV: binary,
        }
    )


def ray_status(settings: Settings) -> ComponentStatus:
    url = settings.dashboard_url  # answers without the token: the dashboard and the GCS are up
    return ComponentStatus(
        "ray", http_ok(f"{url}/api/gcs_healthz"), url, _is_local(settings.ray_address)
    )


def metrics_status(settings: Settings) -> ComponentStatus:
    """Ray's Prometheus endpoint on the local head (request metrics per service and version)."""
    url = settings.metrics_url
    return ComponentStatus("metrics", http_ok(url), url, _is_local(settings.ray_address))


def ray_up(settings: Settings, timeout_s: float = 90.0) -> ComponentStatus:
    status = ray_status(settings)
    if status.healthy or not status.managed:
        return status
    _stop_orphaned_haproxy()  # left by an earlier head: it would hold the serve ports
    ingress = haproxy_env()
    if not ingress:
        log.warning(
            "haproxy not found: Ray Serve falls back to its Python HTTP proxy, "
            "which caps throughput (install Debian's haproxy: `make install`)"
        )
    host, port = settings.ray_address.rsplit(":", 1)
    if listening(host, int(port)):
        raise RuntimeError(
            f"port {port} is taken but no Ray dashboard answers at {settings.dashboard_url}: "
            "a Ray head left half-stopped (run `ray stop --force`) or another program"
        )
    if listening(LOCAL_NODE_IP, settings.metrics_port):
        raise RuntimeError(
            f"port {settings.metrics_port} (Ray's Prometheus endpoint) is taken by another "
            "program: set MLOPS_METRICS_PORT to a free port"
        )
    command = [
        tool("ray"),
        "start",
        "--head",
        f"--port={port}",
        f"--node-ip-address={LOCAL_NODE_IP}",
        f"--num-cpus={LOCAL_LOGICAL_CPUS}",
        "--dashboard-host=127.0.0.1",
        f"--metrics-export-port={settings.metrics_port}",
        "--disable-usage-stats",
    ]
    ensure_token(settings)  # every server of the node demands it; the node binds loopback
    started = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=os.environ
        | SERVING_ENV
        | ingress
        | client_env(settings)
        | {"RAY_USAGE_STATS_ENABLED": "0"},
    )
    if started.returncode != 0:
        reason = (started.stderr or started.stdout).strip().splitlines() or ["no output"]
        raise RuntimeError(f"`ray start` failed (exit {started.returncode}): {reason[-1]}")
    wait_until(lambda: ray_status(settings).healthy, "Ray head", timeout_s)
    wait_until(lambda: metrics_status(settings).healthy, "Ray's Prometheus endpoint", timeout_s)
    return ray_status(settings)


def ray_down(settings: Settings) -> None:
    """`ray stop --force`: it kills by command line, machine-wide (raylet, `ray::` workers,
    and any process whose arguments contain `monitor.py`: hence no test file is named so)."""
    if ray_status(settings).managed:
        subprocess.run([tool("ray"), "stop", "--force"], capture_output=True, check=False)
        _stop_orphaned_haproxy()


def _stop_orphaned_haproxy() -> None:
    """`ray stop` leaves Serve's HAProxy running; its ports would block the next start."""
    import psutil

    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["name"] == "haproxy" and HAPROXY_STATE_DIR in cmdline:
            with contextlib.suppress(psutil.Error):
                process.kill()


# --- whole stack --------------------------------------------------------------------------


def up(with_ray: bool = True, profile: StackProfile = "embedded") -> list[ComponentStatus]:
    if profile == "production":
        from mlops.production import profile as production

        return production.up(with_ray)
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    started = [mlflow_up(settings)]
    if with_ray:
        started.append(ray_up(settings))
        if started[-1].managed:
            started.append(metrics_status(settings))
    return started


def down(profile: StackProfile = "embedded", with_ray: bool = True) -> None:
    if profile == "production":
        from mlops.production import profile as production

        return production.down(with_ray)
    settings = get_settings()
    if with_ray:
        ray_down(settings)
    mlflow_down(settings)


def status(profile: StackProfile = "embedded", with_ray: bool = True) -> list[ComponentStatus]:
    if profile == "production":
        from mlops.production import profile as production

        return production.status(with_ray)
    settings = get_settings()
    if not with_ray:
        return [mlflow_status(settings)]
    ray = ray_status(settings)
    return [mlflow_status(settings), ray, *([metrics_status(settings)] if ray.managed else [])]
