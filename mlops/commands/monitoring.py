"""CLI commands of the monitoring area (added to the `mlops` app by `register`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to `app`."""
