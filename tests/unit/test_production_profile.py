"""The production profile's pieces without its servers: ports, secrets, the commands and
environments it starts servers with, and stopping by pid."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from mlops.cli import app
from mlops.processes import alive, recorded_pid, start_server, stop_server
from mlops.production import mlflow_server, postgres, seaweedfs
from mlops.production.layout import (
    CONFIGURABLE_PORTS,
    HOST,
    POSTGRES,
    S3,
    WEED_PORT_FLAGS,
    Layout,
    ports,
)
from mlops.production.profile import fresh_ports
from mlops.production.secrets import ADMIN_PASSWORD_ENV, GENERATED, load_secrets, read_env_file
from mlops.sandbox import EPHEMERAL_RANGE

pytestmark = pytest.mark.unit


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Layout:
    for name, _ in GENERATED.values():
        monkeypatch.delenv(name, raising=False)
    for variable in CONFIGURABLE_PORTS.values():
        monkeypatch.delenv(variable, raising=False)
    where = Layout.of(tmp_path)
    where.make()
    return where


def test_ports_are_chosen_once_distinct_and_below_the_ephemeral_range(layout):
    first = ports(layout)
    assert ports(layout) == first
    assert len(set(first.values())) == len(first)
    assert max(first.values()) < int(EPHEMERAL_RANGE.read_text().split()[0])


def test_a_configured_port_wins_and_a_taken_one_is_chosen_again_only_before_a_start(
    layout, monkeypatch
):
    first = ports(layout)
    monkeypatch.setenv(CONFIGURABLE_PORTS[POSTGRES], "15432")
    assert ports(layout)[POSTGRES] == 15432
    with socket.socket() as taken:
        taken.bind((HOST, first[S3]))
        taken.listen()
        assert ports(layout)[S3] == first[S3]  # running or not: status reads the same port
        assert ports(layout, fresh=(S3,))[S3] != first[S3]


def test_a_server_that_runs_keeps_its_ports_while_it_does_not_answer(layout):
    """`up` finds a server unhealthy (slow, starting): only a stopped one gets new ports."""
    layout.pid(seaweedfs.COMPONENT).write_text(str(os.getpid()))  # a live process, recorded
    assert fresh_ports(layout, [POSTGRES, S3]) == (POSTGRES,)
    layout.pid(seaweedfs.COMPONENT).unlink()
    assert set(fresh_ports(layout, [S3])) == {S3, *WEED_PORT_FLAGS}


def test_secrets_are_generated_once_private_and_the_environment_wins_unwritten(layout, monkeypatch):
    first = load_secrets(layout)
    assert stat.S_IMODE(layout.secrets.stat().st_mode) == 0o600
    assert load_secrets(layout) == first
    assert len({first.postgres_password, first.admin_password, first.s3_secret_key}) == 3
    monkeypatch.setenv(ADMIN_PASSWORD_ENV, "from-the-environment")
    assert load_secrets(layout).admin_password == "from-the-environment"
    assert "from-the-environment" not in layout.secrets.read_text()
    assert read_env_file(layout.secrets)[ADMIN_PASSWORD_ENV] == first.admin_password


def test_postgresql_s_user_must_reach_the_cluster_folder():
    private = Path(tempfile.mkdtemp())
    try:
        (private / "cluster").mkdir()
        assert not postgres.reachable(private / "cluster" / "data", "nobody")
        private.chmod(0o711)
        assert postgres.reachable(private / "cluster" / "data", "nobody")
    finally:
        (private / "cluster").rmdir()
        private.rmdir()


def test_weed_binds_every_server_to_loopback_on_a_port_of_the_profile(layout):
    known = ports(layout)
    command = seaweedfs.command(layout, known)
    assert f"-ip={HOST}" in command and f"-ip.bind={HOST}" in command
    assert f"-s3.port={known[S3]}" in command
    for name, flag in WEED_PORT_FLAGS.items():
        assert f"{flag}={known[name]}" in command
    assert {"-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0"} <= set(command)
    secrets = load_secrets(layout)
    assert not any(secrets.s3_secret_key in arg for arg in command)


def test_start_sh_gets_everything_from_the_environment_and_puts_no_secret_on_its_command_line(
    layout, tmp_path
):
    """infra/mlflow/start.sh run as the profile runs it, with `mlflow` replaced by a script
    that prints its arguments."""
    known, secrets = ports(layout), load_secrets(layout)
    echo = tmp_path / "mlflow"
    echo.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    echo.chmod(0o755)
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = mlflow_server.server_env(known, secrets) | {"MLFLOW_BIN": str(echo), "PATH": path}
    shown = subprocess.run(
        ["sh", str(mlflow_server.START_SCRIPT)], env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    args = shown.stdout.split()
    assert args[args.index("--host") + 1] == HOST
    assert args[args.index("--port") + 1] == str(known["mlflow"])
    assert args[args.index("--app-name") + 1] == "basic-auth"
    assert f"postgresql://mlflow@{HOST}:{known[POSTGRES]}/mlflow" in args
    for value in (secrets.postgres_password, secrets.admin_password, secrets.s3_secret_key):
        assert value not in shown.stdout


def test_a_server_is_stopped_by_its_recorded_pid_and_a_reused_pid_is_left_alone(tmp_path):
    pid_file, log_file = tmp_path / "sleep.pid", tmp_path / "sleep.log"
    pid = start_server(["sleep", "60"], log_file, pid_file, os.environ)
    assert recorded_pid(pid_file) == pid and psutil.Process(pid).name() == "sleep"
    past = time.time() - 3600  # a pid file written before the process began: a reused pid
    os.utime(pid_file, (past, past))
    assert recorded_pid(pid_file) is None
    assert not stop_server(pid_file) and alive(pid)
    pid_file.write_text(str(pid))
    assert stop_server(pid_file, signal.SIGTERM)
    assert not alive(pid)
    assert not pid_file.exists() and not stop_server(pid_file)


def test_status_before_the_first_up_says_never_started_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["stack", "status", "--profile", "production"])
    assert result.exit_code == 1
    for component in (postgres.COMPONENT, seaweedfs.COMPONENT, mlflow_server.COMPONENT):
        assert component in result.output
    assert "never started" in result.output
    assert not (tmp_path / "production").exists()
