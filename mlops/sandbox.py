"""A private copy of the working tree and free loopback ports, for runs that must not touch
the developer's checkout or local stack (the test suite, the benchmarks)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from services.gitutil import working_files
from services.settings import PACKAGE_REPO


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
