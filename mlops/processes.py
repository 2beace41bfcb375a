"""Servers of the local stack: started in a session of their own with a pid file and a log,
checked over HTTP or TCP, stopped by the recorded pid (never by name)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    healthy: bool
    url: str
    managed: bool  # started by this stack (False: an external server from the environment)


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def wait_until(check: Callable[[], bool], what: str, timeout_s: float) -> None:
    """Poll `check` until it is true; TimeoutError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not become healthy within {timeout_s:.0f}s")


def wait_for_server(
    check: Callable[[], bool], pid_path: Path, log_path: Path, what: str, timeout_s: float
) -> None:
    """`wait_until(check)`, failing at once with the log's last line when the server exits."""

    def healthy_or_gone() -> bool:
        if check():
            return True
        if recorded_process(pid_path) is None:
            lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()]
            last = " | ".join([line for line in lines if line][-3:]) or "no output"
            raise RuntimeError(f"{what} exited: {last} (log: {log_path})")
        return False

    wait_until(healthy_or_gone, f"{what} (log: {log_path})", timeout_s)


def listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def start_server(
    command: Sequence[str],
    log_path: Path,
    pid_path: Path,
    env: Mapping[str, str],
    user: str | None = None,
) -> int:
    """Start `command` in the background (a new session, output appended to `log_path`),
    as `user` when given (root only); its pid goes to `pid_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            list(command),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(env),
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
    pid_path.write_text(str(process.pid))
    return process.pid


def recorded_process(pid_path: Path) -> psutil.Process | None:
    """The live process `pid_path` names; None when it is gone or the pid was reused since
    (a process younger than the file is not the one recorded)."""
    try:
        process = psutil.Process(int(pid_path.read_text()))
        alive = process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        recorded_at = pid_path.stat().st_mtime
        if alive and process.create_time() <= recorded_at + 1.0:
            return process
    except (FileNotFoundError, ValueError, psutil.Error):
        pass
    return None


def stop_server(
    pid_path: Path, sig: int = signal.SIGTERM, group: bool = True, timeout_s: float = 30.0
) -> bool:
    """Send `sig` to the recorded process (and its process group), wait for it to exit
    (SIGKILL after `timeout_s`), remove the pid file; False when nothing was running."""
    process = recorded_process(pid_path)
    pid_path.unlink(missing_ok=True)
    if process is None:
        return False
    members = [process, *process.children(recursive=True)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig) if group else process.send_signal(sig)
    _, alive = psutil.wait_procs(members, timeout=timeout_s)
    for straggler in alive:
        log.warning("pid %d outlived signal %d by %.0fs: killed", straggler.pid, sig, timeout_s)
        with contextlib.suppress(psutil.Error):
            straggler.kill()
    return True
