"""A private copy of the working tree, of the manifest, and free loopback ports, for runs that
must not touch the developer's checkout or local stack (the test suite, the benchmarks)."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from services.gitutil import working_files
from services.settings import PACKAGE_REPO


def manifest_copy(path: Path, service: str, edit: Callable[[Any], None]) -> Path:
    """The manifest saved at `path` with `edit` applied to `service`'s application entry: a
    setting deployed for a test or an A/B while the manifest itself stays as git has it."""
    from serving.manifest import load, manifest_path, save

    doc = load(manifest_path())
    edit(next(app for app in doc["applications"] if app["name"] == service))
    save(path, doc)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
SERVER_PORTS = 10_000  # how many ports below the ephemeral range server_port draws from


def server_port(taken: Collection[int] = ()) -> int:
    """A free port on 127.0.0.1 below the kernel's ephemeral range, not in `taken`: no
    outgoing connection is given it as its source port between the choice and the bind (a
    `free_port` is in that range, and a busy machine may hand it out in the meantime)."""
    try:
        first_ephemeral = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 32768  # Linux's default
    low = max(1024, first_ephemeral - SERVER_PORTS)
    for _ in range(200):
        port = random.randrange(low, first_ephemeral)
        if port not in taken and _bindable(port):
            return port
    raise RuntimeError(f"no free port between {low} and {first_ephemeral - 1}")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def copy_repo(destination: Path) -> Path:
    """Copy the working tree (tracked and untracked, not ignored files) into a fresh git repo."""
    for relative in working_files(PACKAGE_REPO):
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PACKAGE_REPO / relative, target)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=destination, check=True)
    subprocess.run([*git, "add", "-A"], cwd=destination, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=destination, check=True)
    return destination
