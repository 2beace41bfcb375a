"""`mlops rollout start|status|analyse|advance|abort`: releases that reach users in steps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Column, Table

from mlops.commands.serving import ManifestOption, RemoteOption, manifest_file
from mlops.console import console, fail, run_guarded

if TYPE_CHECKING:
    from serving.rollout import Step

rollout_app = typer.Typer(
    help="Rollouts: a release in steps (shadow, canary), each a commit on main.",
    no_args_is_help=True,
)
ServiceOption = Annotated[str, typer.Option("--service", "-s", help="The service.")]
DeployOption = Annotated[bool, typer.Option(help="Deploy and verify after the commit.")]


def _report(step: Step) -> None:
    commit = f"commit {step.commit[:10]}" if step.commit else "manifest unchanged"
    console.print(f"[green]{step.message.splitlines()[0]}[/] ({commit})")


@rollout_app.command("start")
def start_command(
    tag: Annotated[str, typer.Argument(help="<service>@v<N>: the candidate")],
    manifest: ManifestOption = None,
    deploy: DeployOption = True,
    remote: RemoteOption = None,
) -> None:
    """Gates, then the policy's first step committed on main (what `mlops promote` does for a
    service with a rollout policy)."""
    from serving.rollout import start

    _report(run_guarded(lambda: start(tag, manifest_file(manifest), deploy, remote=remote)))


@rollout_app.command("status")
def status_command(manifest: ManifestOption = None) -> None:
    """The rollout of every service: stable version, candidate, step, since when."""
    from serving.manifest import rollouts, versions
    from serving.rollout import describe, policy_or_none

    path = manifest_file(manifest)
    stable, active = run_guarded(lambda: (versions(path), rollouts(path)))
    table = Table("service", "stable version", Column("rollout", no_wrap=True), "since")
    for service, version in stable.items():
        traffic = active.get(service)
        since = "" if traffic is None or traffic.since is None else traffic.since.isoformat()
        table.add_row(
            service,
            f"v{version}" if version else "-",
            describe(traffic, policy_or_none(service)),
            since,
        )
    console.print(table)


@rollout_app.command("analyse")
def analyse_command(
    service: Annotated[
        list[str] | None, typer.Option("--service", "-s", help="Service(s) to analyse.")
    ] = None,
    all_services: Annotated[
        bool, typer.Option("--all", help="Every service with a rollout in progress.")
    ] = False,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            help="Take the decision: commit the next step or the abort on main (or open its "
            "pull request when the policy says auto_advance: false).",
        ),
    ] = False,
    manifest: ManifestOption = None,
    deploy: DeployOption = True,
    remote: RemoteOption = None,
) -> None:
    """Candidate against stable for the current step: advance, hold or abort, with figures."""
    from monitoring.rollout_job import analyse_and_apply
    from serving.manifest import rollouts

    path = manifest_file(manifest)
    if bool(service) == all_services:
        fail("give --service S (repeatable) or --all")
    names = sorted(run_guarded(lambda: rollouts(path))) if all_services else list(service or [])
    if not names:
        console.print("no rollout in progress")
    for name in names:
        outcome = run_guarded(
            lambda name=name: analyse_and_apply(name, path, apply, deploy, remote)
        )
        typer.echo(outcome.markdown)
        console.print(f"{name}: [bold]{outcome.decision}[/] ({outcome.applied})")


@rollout_app.command("advance")
def advance_command(
    service: ServiceOption,
    manifest: ManifestOption = None,
    deploy: DeployOption = True,
    remote: RemoteOption = None,
) -> None:
    """Take the next step now (after the last: completion), whatever the analysis says."""
    from serving.rollout import advance

    note = "Advanced by hand (`mlops rollout advance`)."
    _report(run_guarded(lambda: advance(service, note, manifest_file(manifest), deploy, remote)))


@rollout_app.command("abort")
def abort_command(
    service: ServiceOption,
    reason: Annotated[str, typer.Option(help="Why; recorded in the commit and on the version.")],
    manifest: ManifestOption = None,
    deploy: DeployOption = True,
    remote: RemoteOption = None,
) -> None:
    """All traffic back on the stable version; the candidate's version is tagged with why."""
    from serving.rollout import abort

    _report(run_guarded(lambda: abort(service, reason, manifest_file(manifest), deploy, remote)))


def register(app: typer.Typer) -> None:
    """Add this area's commands to `app`."""
    app.add_typer(rollout_app, name="rollout")
