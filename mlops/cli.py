"""`mlops`: the command line of the platform. Commands are thin: they call library code.

Heavy libraries (MLflow, Ray, XGBoost) are imported inside commands, so `mlops --help`
and the quick commands stay fast.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mlops.console import DriftKind, console, expected_errors, message, run_guarded
from services.ray_access import use_in_this_process
from services.registry_keys import DVC_DATA_MD5_TAG, GIT_COMMIT_TAG
from services.settings import STACK_PROFILES, get_settings
from services.spec import load_spec, service_names
from serving.protocol import RECORDS

app = typer.Typer(
    help="MLOps GitOps platform: train, promote, serve and monitor ML services.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(
    help="Local stack: MLflow server and Ray head (embedded), or PostgreSQL, S3 and MLflow "
    "with basic auth (--profile production).",
    no_args_is_help=True,
)
stage_app = typer.Typer(help="DVC pipeline stages (called by dvc.yaml).", no_args_is_help=True)
data_app = typer.Typer(help="Training snapshots.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(stage_app, name="stage")
app.add_typer(data_app, name="data")

Profile = Enum("Profile", {p: p for p in STACK_PROFILES}, type=str)  # type: ignore[misc]
ProfileOption = Annotated[
    Profile,
    typer.Option(
        help="embedded: MLflow on SQLite and a Ray head; production: PostgreSQL, SeaweedFS (S3) "
        "and MLflow's basic-auth server, state and secrets under $MLOPS_HOME/production."
    ),
]
ServiceOption = Annotated[
    str, typer.Option("--service", "-s", help="Service name (folder under services/).")
]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("urllib3", "alembic", "mlflow.store", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    run_guarded(lambda: use_in_this_process(get_settings()))  # before a command imports ray


# --- stack ----------------------------------------------------------------------------------


def _print_status(components: list[Any]) -> None:
    table = Table("component", "healthy", "url", "managed here")
    for c in components:
        table.add_row(
            c.name,
            "[green]yes[/]" if c.healthy else "[red]no[/]",
            c.url,
            "yes" if c.managed else "external",
        )
    console.print(table)


@stack_app.command("up")
def stack_up(
    ray: Annotated[
        bool, typer.Option(help="Also start Ray: the head (and worker nodes, production).")
    ] = True,
    profile: ProfileOption = Profile.embedded,  # type: ignore[attr-defined]
) -> None:
    """Start the stack's servers that are down; wait until healthy; print the URLs."""
    from mlops import stack

    _print_status(run_guarded(lambda: stack.up(with_ray=ray, profile=profile.value)))


@stack_app.command("down")
def stack_down(
    ray: Annotated[bool, typer.Option(help="Also stop Ray.")] = True,
    profile: ProfileOption = Profile.embedded,  # type: ignore[attr-defined]
) -> None:
    """Stop what `stack up` started."""
    from mlops import stack

    stack.down(profile.value, with_ray=ray)
    console.print("stack stopped")


@stack_app.command("status")
def stack_status(
    ray: Annotated[bool, typer.Option(help="Also show Ray.")] = True,
    profile: ProfileOption = Profile.embedded,  # type: ignore[attr-defined]
) -> None:
    """Show whether each server of the stack is up; exit 1 if any is down."""
    from mlops import stack

    components = stack.status(profile.value, with_ray=ray)
    _print_status(components)
    if not all(c.healthy for c in components):
        raise typer.Exit(1)


# --- data and pipeline stages ---------------------------------------------------------------


@data_app.command("init")
def data_init(service: Annotated[list[str] | None, typer.Option("--service", "-s")] = None) -> None:
    """Make every snapshot present: `dvc pull`, or rebuild the deterministic default data.

    Says per service what it did or what to run; exits 1 if a snapshot is still missing.
    """
    from training.data import ensure_snapshot

    failed = []
    for name in service or service_names():
        try:
            how = ensure_snapshot(load_spec(name))
        except expected_errors() as exc:
            console.print(f"[bold red]error:[/] {name}: {message(exc)}", soft_wrap=True)
            failed.append(name)
            continue
        console.print(f"{name}: snapshot {how}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


@app.command()
def sample(
    service: ServiceOption,
    rows: Annotated[int, typer.Option(min=1, max=100_000)] = 5,
    drift: Annotated[DriftKind, typer.Option(help="Simulated drift.")] = DriftKind.none,  # type: ignore[attr-defined]
    seed: int = 0,
) -> None:
    """Print `{"records": [...]}` JSON of rows (features only): generated, or sampled from
    the service's snapshot when it has no generator."""
    from services.schema import frame_to_records
    from services.traffic import traffic_rows

    spec = run_guarded(lambda: load_spec(service))
    frame = run_guarded(lambda: traffic_rows(spec, rows, seed, drift.value))[spec.feature_names]
    typer.echo(json.dumps({RECORDS: frame_to_records(spec, frame)}))


def _stage(name: str, action: Callable[[Any], Any], service: str) -> None:
    result = run_guarded(lambda: action(load_spec(service)))
    console.print(f"{service} {name}: {json.dumps(result)}")


@stage_app.command("prepare")
def stage_prepare(service: str) -> None:
    """Validate the snapshot against the spec and split it."""
    from training.data import prepare

    _stage("prepare", prepare, service)


@stage_app.command("train")
def stage_train(service: str) -> None:
    """Train XGBoost with the spec's params."""
    from training.train import train

    _stage("train", train, service)


@stage_app.command("evaluate")
def stage_evaluate(service: str) -> None:
    """Write test metrics and plot data."""
    from training.evaluate import evaluate

    _stage("evaluate", evaluate, service)


@stage_app.command("register")
def stage_register(service: str) -> None:
    """Register a new MLflow model version with lineage (refused below the floor)."""
    from training.register import register

    _stage("register", register, service)


@app.command()
def versions(
    service: Annotated[list[str] | None, typer.Option("--service", "-s")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List registered versions with their metrics, lineage and aliases."""
    from services.catalogue_report import registered_versions

    rows = run_guarded(lambda: registered_versions(service or service_names()))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("service", "version", "aliases", "metric", "git", "data md5")
    for r in rows:
        table.add_row(
            r["service"],
            r["version"],
            ",".join(r["aliases"]),
            f"{r['metric']}={r['value']}",
            r[GIT_COMMIT_TAG][:8],
            r[DVC_DATA_MD5_TAG][:8],
        )
    Console().print(table)


# Commands of each area live in their own module and add themselves to `app`.
from mlops.commands import gitops, monitoring, rollout, serving  # noqa: E402

for area in (serving, rollout, monitoring, gitops):
    area.register(app)


@app.command()
def demo(profile: ProfileOption = Profile.embedded) -> None:  # type: ignore[attr-defined]
    """The whole loop on a local stack: train, promote, serve, drift, retrain PR, v2."""
    from mlops.demo import run_demo

    run_guarded(lambda: run_demo(profile.value))
