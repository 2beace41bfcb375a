"""Console helpers shared by the CLI commands: one way to report errors and exit."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

import typer
from rich.console import Console

from services.drift import DRIFT_KINDS

console = Console(stderr=True)
#: The choices of the commands' `--drift` option.
DriftKind = Enum("DriftKind", {k.replace("-", "_"): k for k in DRIFT_KINDS}, type=str)  # type: ignore[misc]


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error and exit non-zero (never a traceback for expected failures)."""
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def expected_errors() -> tuple[type[Exception], ...]:
    """Failures library code reports with a message meant for the user (no traceback)."""
    from mlflow.exceptions import MlflowException

    from services.registry import RegistryUnavailable
    from services.spec import SpecError

    return (
        SpecError,
        RegistryUnavailable,
        MlflowException,
        ValueError,
        KeyError,
        RuntimeError,
        FileNotFoundError,
        FileExistsError,
        TimeoutError,
    )


def message(exc: BaseException) -> str:
    """The user-facing text of an expected failure."""
    return str(exc).strip("'\"")


def run_guarded(action: Callable[[], Any]) -> Any:
    """Run library code; expected failures become a one-line message and exit code 1."""
    try:
        return action()
    except expected_errors() as exc:
        fail(message(exc))
