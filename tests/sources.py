"""The repository's own Python files (benchmarks' pinned environments, `.venv`, are not)."""

from __future__ import annotations

from pathlib import Path


def python_sources(folder: Path) -> list[Path]:
    """Every `.py` file under `folder`, in order, outside virtual environments."""
    return sorted(path for path in folder.rglob("*.py") if ".venv" not in path.parts)
