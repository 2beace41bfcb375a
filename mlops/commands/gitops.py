"""CLI commands of the gitops area (added to the `mlops` app by `register`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mlops.console import fail, run_guarded
from services.registry_keys import DVC_DATA_MD5_TAG, GIT_COMMIT_TAG

ci_app = typer.Typer(help="Helpers for the GitHub workflows.", no_args_is_help=True)

Row = dict[str, Any]


def new_versions(before: list[Row], after: list[Row]) -> list[Row]:
    """Rows of `after` that `before` does not have (both from `mlops versions --json`)."""
    seen = {(row["service"], str(row["version"])) for row in before}
    return [row for row in after if (row["service"], str(row["version"])) not in seen]


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def versions_markdown(rows: list[Row]) -> str:
    """A Markdown table of registered versions (a sentence when there are none)."""
    if not rows:
        return "No new model version was registered (no pipeline stage had changed)."
    lines = [
        "| service | version | metric | git commit | data md5 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in sorted(rows, key=lambda r: (r["service"], int(r["version"]))):
        metric = f"{row.get('metric', '?')} = {row.get('value', '?')}"
        lines.append(
            "| "
            + " | ".join(
                _cell(v)
                for v in (
                    row["service"],
                    row["version"],
                    metric,
                    str(row.get(GIT_COMMIT_TAG, "?"))[:8],
                    str(row.get(DVC_DATA_MD5_TAG, "?"))[:8],
                )
            )
            + " |"
        )
    return "\n".join(lines)


def _read_rows(path: Path) -> list[Row]:
    try:
        rows = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        fail(f"{path}: not a `mlops versions --json` file ({exc})")
    if not isinstance(rows, list):
        fail(f"{path}: expected a JSON list of versions")
    return rows


@ci_app.command("new-versions")
def new_versions_command(
    before: Annotated[Path, typer.Argument(help="`mlops versions --json` before training.")],
    after: Annotated[Path, typer.Argument(help="`mlops versions --json` after training.")],
) -> None:
    """Print a Markdown table of the versions registered between BEFORE and AFTER."""
    typer.echo(versions_markdown(new_versions(_read_rows(before), _read_rows(after))))


@ci_app.command("gitops-remote")
def gitops_remote_command() -> None:
    """Print the local bare repository that workflows run with act push to (created under
    MLOPS_HOME and seeded with this checkout's main on first use)."""
    from services.settings import get_settings, repo_root
    from serving.gitops import local_remote

    typer.echo(run_guarded(lambda: local_remote(get_settings().home, repo_root())))


@ci_app.command("image-tag")
def image_tag_command() -> None:
    """Print the serving image's tag: the digest of the files infra/k8s/Dockerfile copies
    (what the RayService names and the image job of ci.yml pushes)."""
    from serving.image import image_tag

    typer.echo(run_guarded(image_tag))


def register(app: typer.Typer) -> None:
    """Add this area's commands to `app`."""
    app.add_typer(ci_app, name="ci")
