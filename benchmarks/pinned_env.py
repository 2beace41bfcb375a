"""A benchmark's own environment, pinned apart from the project's lock: `<folder>/.venv`,
created with uv and synced to `<folder>/requirements.txt`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.settings import tool


def pinned_python(folder: Path) -> Path:
    """The interpreter of `folder`'s environment, created if missing and brought to exactly
    the pinned set (packages not pinned are removed)."""
    venv = folder / ".venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run(
            [tool("uv"), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True
        )
    sync = [tool("uv"), "pip", "sync", "--quiet", "--python", str(python)]
    subprocess.run([*sync, str(folder / "requirements.txt")], check=True)
    return python
