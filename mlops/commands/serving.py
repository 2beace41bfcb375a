"""CLI commands of the serving area: deploy, serve status/smoke, promote, render, batch-score."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mlops.console import console, fail, run_guarded
from serving.batch_score import SCORERS

serve_app = typer.Typer(help="What runs on the Ray cluster.", no_args_is_help=True)
render_app = typer.Typer(
    help="Files rendered from the catalogue and the manifest.", no_args_is_help=True
)
ManifestOption = Annotated[
    Path | None, typer.Option("--manifest", "-m", help="Serve manifest (default: production).")
]
RemoteOption = Annotated[
    str | None,
    typer.Option(
        envvar="GITOPS_REMOTE",
        help="Push the commit to this remote's main before anything else changes "
        "(default: commit on the checked-out branch only).",
    ),
]


def manifest_file(path: Path | None) -> Path:
    from serving.manifest import manifest_path

    return path or manifest_path()


def deploy_command(
    manifest: ManifestOption = None,
    ref: Annotated[
        str, typer.Option(help="The commit whose manifest is applied (what main says runs).")
    ] = "main",
) -> None:
    """Reconcile the Ray cluster to the manifest committed on main (RAY_ADDRESS: the cluster)."""
    from serving.deploy import deploy
    from serving.gitops import committed_text, manifest_copy
    from serving.promote import align_aliases

    path = manifest_file(manifest)
    text = run_guarded(lambda: committed_text(path, ref))
    if path.read_text() != text:
        console.print(f"[yellow]note:[/] edits of {path} that are not at {ref} are not deployed")
    with manifest_copy(text, path.name) as committed:
        apps = run_guarded(lambda: deploy(committed))
        changed = run_guarded(lambda: align_aliases(committed))
    console.print(f"deployed {', '.join(a.name for a in apps) or 'nothing'} from {path} at {ref}")
    for service, version in changed.items():
        console.print(f"{service}: alias production -> v{version}")


def promote_command(
    tag: Annotated[str, typer.Argument(help="<service>@v<N>, e.g. fraud-detection@v2")],
    manifest: ManifestOption = None,
    deploy: Annotated[bool, typer.Option(help="Deploy and verify after the commit.")] = True,
    remote: RemoteOption = None,
    direct: Annotated[
        bool,
        typer.Option(
            "--direct",
            help="Serve all traffic at once even when the service has a rollout policy.",
        ),
    ] = False,
) -> None:
    """Promote a registered version: gates, manifest commit (and push), aliases, deploy, verify.

    A service with a rollout policy (promotion.rollout) and a stable version starts a rollout
    instead: its first step, committed the same way (`mlops rollout`).
    """
    from serving.promote import parse_tag, promote
    from serving.rollout import rolls_out, start

    path = manifest_file(manifest)
    service, _ = run_guarded(lambda: parse_tag(tag))
    if not direct and run_guarded(lambda: rolls_out(path, service)):
        step = run_guarded(lambda: start(tag, path, do_deploy=deploy, remote=remote))
        console.print(f"[green]{step.message.splitlines()[0]}[/] (commit {step.commit})")
        return
    result = run_guarded(lambda: promote(tag, path, do_deploy=deploy, remote=remote))
    commit = f"commit {result.commit[:10]}" if result.commit else "manifest already named it"
    console.print(
        f"[green]{result.service} v{result.version} is in production[/] "
        f"(was {result.replaced or 'none'}; {commit}; manifest {result.manifest})"
    )


@serve_app.command("status")
def serve_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Applications, deployments, replicas and the model version each serves."""
    from services.inference_log import MODEL_VERSION
    from serving.deploy import status

    apps = run_guarded(status)
    if as_json:
        typer.echo(json.dumps([asdict(a) for a in apps], indent=2, default=str))
        return
    table = Table("application", "status", "deployments (replicas)", "model version", "error")
    for app in apps:
        deployments = ", ".join(
            f"{name}: {d.status} {_replicas(d.replicas)}".strip()
            for name, d in app.deployments.items()
        )
        version = app.health.get(MODEL_VERSION) or "-"
        desired = app.health.get("desired_version")
        if desired and desired != version:
            version = f"{version} (wants {desired})"
        table.add_row(
            app.name,
            app.status,
            deployments,
            str(version),
            str(app.health.get("error") or app.message or ""),
        )
    Console().print(table)


def _replicas(states: dict[str, int]) -> str:
    """`(running=2)`: live replicas by state, as Ray counts them."""
    return "(" + ", ".join(f"{k.lower()}={v}" for k, v in states.items()) + ")" if states else ""


@serve_app.command("smoke")
def serve_smoke(manifest: ManifestOption = None) -> None:
    """Every deployed application is healthy and serves the manifest's version."""
    from services.inference_log import MODEL_VERSION
    from serving.deploy import app_health
    from serving.manifest import versions

    failures = []
    for service, version in run_guarded(lambda: versions(manifest_file(manifest))).items():
        if version is None:
            continue
        health = app_health(service)
        ok = health.get("ready") and health.get(MODEL_VERSION) == version
        console.print(f"{service}: {'ok' if ok else 'FAILED'} {json.dumps(health)}")
        if not ok:
            failures.append(service)
    if failures:
        fail(f"unhealthy: {', '.join(failures)}")


@render_app.command("k8s")
def render_k8s(
    manifest: ManifestOption = None,
    check: Annotated[bool, typer.Option(help="Exit 1 if the committed file differs.")] = False,
) -> None:
    """Render infra/k8s/rayservice.yaml (KubeRay RayService) from the manifest."""
    from serving import k8s

    path = manifest_file(manifest)
    if check:
        if k8s.k8s_path().read_text() != run_guarded(lambda: k8s.render(path)):
            fail(f"{k8s.k8s_path()} is out of date: run `mlops render k8s`")
        console.print(f"{k8s.k8s_path()} is up to date")
        return
    console.print(f"wrote {run_guarded(lambda: k8s.write(path))}")


@render_app.command("manifest")
def rendermanifest_file(
    manifest: ManifestOption = None,
    check: Annotated[
        bool, typer.Option(help="Exit 1 if the manifest differs from the specs.")
    ] = False,
) -> None:
    """Re-render each application's settings from services/<name>/service.yaml (versions kept)."""
    from serving.gitops import recorded_files
    from serving.k8s import write
    from serving.manifest import drift_from_catalogue, sync_with_catalogue

    path = manifest_file(manifest)
    if check:
        problems = run_guarded(lambda: drift_from_catalogue(path))
        if problems:
            fail("\n".join(problems))
        console.print(f"{path} matches the catalogue")
        return
    run_guarded(lambda: sync_with_catalogue(path))
    console.print(f"wrote {path}")
    for rayservice in recorded_files(path)[1:]:
        console.print(f"wrote {write(path, rayservice)}")


def batch_score_command(
    service: Annotated[str, typer.Option("--service", "-s")],
    input_uri: Annotated[
        str, typer.Option("--input", help="Parquet/CSV file or folder (fsspec URI).")
    ],
    output_uri: Annotated[str, typer.Option("--output", help="New folder for the Parquet parts.")],
    version: Annotated[
        str | None, typer.Option(help="Model version (default: what the manifest on main names).")
    ] = None,
    scorers: Annotated[
        int, typer.Option(min=1, help="Scorer actors (each scores on one core).")
    ] = SCORERS,
) -> None:
    """Score large files on the Ray cluster with scorer actors and the serving model code."""
    from services.settings import get_settings
    from serving.batch_score import batch_score

    address = get_settings().ray_address
    result = run_guarded(
        lambda: batch_score(service, input_uri, output_uri, version, address, scorers)
    )
    typer.echo(json.dumps(result))


def register(app: typer.Typer) -> None:
    """Add this area's commands to `app`."""
    app.command("deploy")(deploy_command)
    app.command("promote")(promote_command)
    app.command("batch-score")(batch_score_command)
    app.add_typer(serve_app, name="serve")
    app.add_typer(render_app, name="render")
