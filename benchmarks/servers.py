"""A server process for the duration of a measurement: started in its own session with this
environment's tools on its PATH, waited for until it answers, its whole process group stopped."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

log = logging.getLogger(__name__)
BIN = Path(sys.executable).parent


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not come up (exit code {process.poll()})")


@contextmanager
def server(command: list[str], health_url: str, env: dict[str, str]) -> Iterator[None]:
    """A server process (the venv's tools on its PATH) for the duration of a measurement."""
    path = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            command,
            env=os.environ | env | {"PATH": path},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_http(health_url, process)
            yield
        except TimeoutError:
            output.seek(0)
            log.error("%s output:\n%s", command[0], output.read().decode()[-3000:])
            raise
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
            process.wait(timeout=30)
