"""Nobody gets in: every socket the local stack listens on is on loopback (the one kind Ray
2.60 cannot bind there demands the token), and Ray refuses callers without its token."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import psutil
import pytest
import ray

from services.ray_access import AUTH_MODE_ENV, LOOPBACK_ENV, auth_headers
from services.settings import get_settings
from tests.figures import record_figure
from tests.sockets import REPLICA_TITLE, is_loopback, listening_sockets

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
ITEM = "Nobody gets into the local stack"
RAY_PACKAGE = str(Path(ray.__file__).parent)
RAY_DAEMONS = ("gcs_server", "raylet", "haproxy")


def stack_processes() -> list[psutil.Process]:
    """Ray's daemons and workers, Serve's haproxy, and the MLflow server with its workers."""
    mlflow = int((get_settings().home / "mlflow.pid").read_text())
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        ours = (
            process.info["name"] in RAY_DAEMONS
            or command.startswith("ray::")
            or RAY_PACKAGE in command
            or "mlflow" in command
        )
        try:
            if ours or os.getpgid(process.pid) == mlflow:
                found.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def listening() -> list[tuple[str, str, int]]:
    """(process title, address, port) of every listening TCP socket of the stack (haproxy's
    UDP sockets send its logs to Serve's manager; they take no connection)."""
    processes = stack_processes()
    titles = {}
    for process in processes:
        with contextlib.suppress(psutil.Error):
            titles[process.pid] = " ".join(process.cmdline())[:60]
    return [
        (titles.get(pid, ""), ip, port) for pid, ip, port in listening_sockets(processes, "tcp")
    ]


def grpc_status(port: int, metadata: list[tuple[str, str]]) -> grpc.StatusCode:
    """The status of an (empty) call of the replica's request method, with `metadata`."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/ray.serve.ASGIService/HandleRequest")
        try:
            call(b"", metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def refuses_without_token(port: int) -> bool:
    """Whether a call without the token gets UNAUTHENTICATED, and one with it gets past the
    check (to whatever the method makes of an empty request)."""
    unauthenticated = grpc.StatusCode.UNAUTHENTICATED
    with_token = list(auth_headers(get_settings()).items())
    return (
        grpc_status(port, []) == unauthenticated
        and grpc_status(port, [(k.lower(), v) for k, v in with_token]) != unauthenticated
    )


def test_no_socket_of_the_stack_listens_outside_loopback(served):
    sockets = listening()
    outside = [s for s in sockets if not is_loopback(s[1])]
    replica_grpc = [s for s in outside if s[0].startswith(REPLICA_TITLE)]
    unexpected = [s for s in outside if s not in replica_grpc]
    guarded = [refuses_without_token(port) for _, _, port in replica_grpc]
    record_figure(ITEM, "listening sockets of the stack", len(sockets), "-", True)
    record_figure(
        ITEM, "outside loopback, other than replicas' gRPC", len(unexpected), "0", not unexpected
    )
    record_figure(
        ITEM,
        "replicas' gRPC sockets (Ray binds `[::]`) refusing a caller without the token",
        f"{sum(guarded)} of {len(replica_grpc)}",
        "all",
        all(guarded),
    )
    assert len(sockets) >= 10 and any(port == 6379 for _, _, port in sockets), sockets
    assert not unexpected, unexpected
    assert replica_grpc and all(guarded), (replica_grpc, guarded)


def test_the_dashboard_refuses_requests_without_the_token_or_with_a_wrong_one(served):
    settings = get_settings()
    url = f"{settings.dashboard_url}/api/serve/applications/"
    statuses = {
        "none": httpx.get(url, timeout=30).status_code,
        "wrong": httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code,
        "the token": httpx.get(url, headers=auth_headers(settings), timeout=30).status_code,
    }
    seen = " / ".join(map(str, statuses.values()))
    expected = "401 / 403 / 200"
    record_figure(
        ITEM,
        "dashboard REST without / with a wrong / with the token",
        seen,
        expected,
        seen == expected,
    )
    assert statuses == {"none": 401, "wrong": 403, "the token": 200}


CONNECT = "import sys, ray; ray.init(address=sys.argv[1]); print('connected', flush=True)"
# A `ray://` client tries 3 times and waits 5, 10, then 15 s after each refusal: 1 s here
# (the timeouts of ray/util/client/worker.py, the second one a cap on the first's growth)
RAY_CLIENT_RETRY_ENV = {
    "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "1",
    "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "1",
}


def connect(address: str, with_token: bool, home: Path) -> subprocess.CompletedProcess[str]:
    """`ray.init(address)` in a fresh process, given the token's settings or none of Ray's
    (and a home without Ray's default token file); a refused `ray://` client gives up after
    about 3 s."""
    env = {k: v for k, v in os.environ.items() if with_token or not k.startswith("RAY_AUTH")}
    env |= {"HOME": str(home), LOOPBACK_ENV: "0"} | RAY_CLIENT_RETRY_ENV
    try:
        return subprocess.run(
            [sys.executable, "-c", CONNECT, address],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
    except subprocess.TimeoutExpired as timeout:
        return subprocess.CompletedProcess(timeout.cmd, -9, "", "timed out")


@pytest.mark.parametrize("address", ["127.0.0.1:6379", "ray://127.0.0.1:10001"])
def test_a_ray_client_without_the_token_is_refused(served, address, tmp_path):
    assert os.environ.get(AUTH_MODE_ENV) == "token"
    refused = connect(address, with_token=False, home=tmp_path)
    outcome = "connected" if "connected" in refused.stdout else "refused"
    record_figure(
        ITEM, f"ray.init({address!r}) without the token", outcome, "refused", outcome == "refused"
    )
    assert refused.returncode != 0 and "connected" not in refused.stdout, refused.stderr[-2000:]
    if not address.startswith("ray://"):  # the same client with the token gets in
        admitted = connect(address, with_token=True, home=tmp_path)
        assert "connected" in admitted.stdout, admitted.stderr[-2000:]
