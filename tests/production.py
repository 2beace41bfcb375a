"""The production profile for the tests: `mlops stack up --profile production` under a
temporary MLOPS_HOME, run through the CLI as a user would, and what its clients need."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from mlops.processes import alive
from mlops.production.layout import Layout
from mlops.production.profile import COMPONENTS
from mlops.production.secrets import GENERATED, read_env_file
from services.settings import tool

PIDS = tuple(COMPONENTS.values())  # the pid files `up` writes, one a server


REGISTRY_URI_ENV = "MLFLOW_REGISTRY_URI"


@dataclass(frozen=True)
class ProductionStack:
    home: Path

    @property
    def layout(self) -> Layout:
        return Layout.of(self.home)

    def cli_env(self) -> dict[str, str]:
        """The environment of `mlops stack ...`: this home, every secret generated (none
        taken from the caller's environment)."""
        names = {name for name, _ in GENERATED.values()}
        return {k: v for k, v in os.environ.items() if k not in names} | {
            "MLOPS_HOME": str(self.home)
        }

    def client_env(self) -> dict[str, str]:
        """client.env: what a client of the profile needs (tracking URI, credentials, S3)."""
        return read_env_file(self.layout.client_env)

    @contextlib.contextmanager
    def as_client(self) -> Iterator[dict[str, str]]:
        """This process as a client of the profile (client.env in its environment meanwhile);
        yields the whole environment, for client subprocesses."""
        env = self.client_env()
        with pytest.MonkeyPatch.context() as patch:
            # MLflow's set_registry_uri (services.registry.connect) exports the registry it
            # names: unset, the registry is the tracking server of client.env
            patch.delenv(REGISTRY_URI_ENV, raising=False)
            for key, value in env.items():
                patch.setenv(key, value)
            yield dict(os.environ)

    def stack(self, verb: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        """`mlops stack <verb> --profile production --no-ray`, output captured (the tests'
        Ray cluster is the session's; test_node_failure.py runs the worker nodes)."""
        command = [tool("mlops"), "stack", verb, "--profile", "production", "--no-ray"]
        return subprocess.run(
            command, env=self.cli_env(), capture_output=True, text=True, timeout=timeout_s
        )

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of every server's log (for a failure's message)."""
        logs = sorted((self.layout.root / "logs").glob("*.log"))
        tails = (
            f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-lines:]) for log in logs
        )
        return "\n".join(tails)

    def processes(self) -> dict[str, list[psutil.Process]]:
        """Per pid file: the recorded server and its descendants (empty when not running)."""
        found: dict[str, list[psutil.Process]] = {}
        for name in PIDS:
            found[name] = []
            with contextlib.suppress(FileNotFoundError, ValueError, psutil.Error):
                server = psutil.Process(int(self.layout.pid(name).read_text()))
                found[name] = [server, *server.children(recursive=True)]
        return found


@contextlib.contextmanager
def production_stack() -> Iterator[ProductionStack]:
    """The profile started in a fresh home under /tmp (PostgreSQL's user must traverse it:
    pytest's own temporary folders are private to root), stopped and removed at the end."""
    home = Path(tempfile.mkdtemp(prefix="mlops-production-"))
    home.chmod(0o711)
    stack = ProductionStack(home)
    try:
        started = stack.stack("up")
        assert started.returncode == 0, started.stderr + stack.log_tails()
        yield stack
    finally:
        servers = [p.pid for found in stack.processes().values() for p in found]
        stack.stack("down")
        left = [pid for pid in servers if alive(pid)]
        for pid in left:  # never leave a server behind, even when `down` failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(home, ignore_errors=True)
        assert not left, f"`mlops stack down --profile production` left pids {left}"
