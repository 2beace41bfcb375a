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
        if recorded_pid(pid_path) is None:
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


def alive(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a zombie has)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def started_since_boot(pid: int) -> float:
    """Seconds from boot to the start of `pid` (Linux's /proc/<pid>/stat): unlike psutil's
    create_time, not moved by the whole seconds of the boot time it adds (/proc/stat)."""
    after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(after_name[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime in ticks


def recorded_pid(pid_path: Path) -> int | None:
    """The pid `pid_path` names while that process runs; None when it is gone or the pid was
    reused since (a process that began after the file was written is not the one recorded)."""
    try:
        pid = int(pid_path.read_text())
        started = started_since_boot(pid)
        written = pid_path.stat().st_mtime - time.time() + time.clock_gettime(time.CLOCK_BOOTTIME)
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive(pid) and started <= written + 1.0 else None


def stop_server(
    pid_path: Path, sig: int = signal.SIGTERM, group: bool = True, timeout_s: float = 30.0
) -> bool:
    """Send `sig` to the recorded process (and its process group), wait until it and its
    descendants exited (SIGKILL after `timeout_s`), remove the pid file; False when nothing
    was running."""
    pid = recorded_pid(pid_path)
    pid_path.unlink(missing_ok=True)
    if pid is None:
        return False
    members = [pid]
    with contextlib.suppress(psutil.Error):
        members += [child.pid for child in psutil.Process(pid).children(recursive=True)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig) if group else os.kill(pid, sig)
    deadline = time.monotonic() + timeout_s
    while any(alive(member) for member in members) and time.monotonic() < deadline:
        time.sleep(0.1)
    for straggler in filter(alive, members):
        log.warning("pid %d outlived signal %d by %.0fs: killed", straggler, sig, timeout_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(straggler, signal.SIGKILL)
    return True
