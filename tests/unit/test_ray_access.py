"""services.ray_access: the local head's token, what Ray's clients are given, and the
HAProxy wrapper that keeps Serve's stats and metrics frontends on loopback."""

from __future__ import annotations

import stat
import subprocess

import pytest

from mlops.stack import HAPROXY_LOOPBACK, HAPROXY_REAL_BINARY_ENV, haproxy_env
from services import ray_access
from services.ray_access import (
    AUTH_MODE_ENV,
    LOOPBACK_ENV,
    TOKEN_ENV,
    TOKEN_PATH_ENV,
    auth_headers,
    client_env,
    ensure_token,
)
from services.settings import get_settings
from serving.k8s import HAPROXY_THREADS_ENV

pytestmark = pytest.mark.unit


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    for name in (TOKEN_ENV, TOKEN_PATH_ENV, "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_the_local_token_is_generated_once_and_readable_by_its_owner_only(home):
    path = ensure_token(get_settings())
    first = path.read_text()
    assert path == home / "ray" / "auth_token" and len(first) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_token(get_settings()).read_text() == first  # kept on the next start
    assert auth_headers(get_settings()) == {"Authorization": f"Bearer {first}"}


def test_clients_get_token_mode_with_the_file_and_loopback_for_a_local_head(home):
    assert client_env(get_settings()) == {LOOPBACK_ENV: "0"}  # no token yet: no auth mode
    path = ensure_token(get_settings())
    assert client_env(get_settings()) == {
        AUTH_MODE_ENV: "token",
        TOKEN_PATH_ENV: str(path),
        LOOPBACK_ENV: "0",
    }


def test_a_remote_cluster_is_reached_with_rays_own_token_variable(home, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray-head.serving.svc:6379")
    monkeypatch.setenv(TOKEN_ENV, "secret-from-ci")
    assert client_env(get_settings()) == {AUTH_MODE_ENV: "token"}  # no loopback setting
    assert auth_headers(get_settings()) == {"Authorization": "Bearer secret-from-ci"}


def test_no_token_known_means_no_header(home):
    assert auth_headers(get_settings()) == {}
    assert not ray_access.token(get_settings())


def test_the_haproxy_wrapper_binds_stats_and_metrics_to_loopback_and_runs_haproxy(tmp_path):
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "frontend prometheus\n    bind :9101\n"
        "frontend http_frontend\n    bind 127.0.0.1:8000\n"
        "listen stats\n  bind *:8404\n  stats enable\n"
    )
    ran = subprocess.run(
        [str(HAPROXY_LOOPBACK), "-db", "-f", str(config), "-sf", "41"],
        env={HAPROXY_REAL_BINARY_ENV: "echo", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout.split() == ["-db", "-f", str(config), "-sf", "41"]  # arguments kept
    binds = [line.split()[1] for line in config.read_text().splitlines() if "bind" in line]
    assert binds == ["127.0.0.1:9101", "127.0.0.1:8000", "127.0.0.1:8404"]


def test_the_stack_runs_debians_haproxy_through_the_wrapper(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: "/usr/sbin/haproxy")
    monkeypatch.delenv("MLOPS_INGRESS", raising=False)
    monkeypatch.delenv(HAPROXY_THREADS_ENV, raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2})
    env = haproxy_env()
    assert env["RAY_SERVE_HAPROXY_BINARY_PATH"] == str(HAPROXY_LOOPBACK)
    assert env[HAPROXY_REAL_BINARY_ENV] == "/usr/sbin/haproxy"
    assert env[HAPROXY_THREADS_ENV] == "3"  # one thread per core, not Ray Serve's 4
    monkeypatch.setenv(HAPROXY_THREADS_ENV, "6")
    assert haproxy_env()[HAPROXY_THREADS_ENV] == "6"  # an operator's choice wins
