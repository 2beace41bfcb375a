"""CLI commands of the monitoring area (added to the `mlops` app by `register`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Column, Table

from mlops.console import DriftKind, console, fail, run_guarded

if TYPE_CHECKING:
    from monitoring.result import MonitorResult


DECISION_STYLE = {
    "none": "green",
    "retrain": "yellow",
    "revert": "red",
    "insufficient-data": "dim",
}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def result_table(result: MonitorResult) -> Table:
    """Thresholds vs measured values, the decision, its reasons and where the outputs are."""
    from monitoring.slo import summary as slo_summary

    m, t, p = result.measurements, result.thresholds, result.measurements.performance
    style = DECISION_STYLE.get(result.action, "white")
    table = Table(
        "check",
        "threshold",
        Column("measured", overflow="fold"),  # long paths fold onto the next line, never cut
        title=f"{result.service}: production v{m.production_version} -> "
        f"[bold {style}]{result.action}[/]",
        title_justify="left",
    )
    table.add_row("rows", f">= {t.min_rows}", f"{m.rows} ({result.labelled_rows} labelled)")
    table.add_row(
        "feature drift share",
        f">= {t.feature_drift_share:g}",
        f"{_fmt(m.feature_drift_share, 2)} ({m.drifted_columns}/{m.total_columns})",
    )
    table.add_row(
        "prediction drift", f">= {t.prediction_drift_threshold:g}", _fmt(m.prediction_drift)
    )
    table.add_row(
        f"live {p.metric}",
        f"margin {t.performance_margin:g} vs previous",
        f"{_fmt(p.live, 4)} (registered {_fmt(p.registered, 4)}, previous {_fmt(p.previous, 4)})",
    )
    table.add_row(
        "hours since promotion",
        f"<= {t.revert_window_hours:g}",
        f"{_fmt(m.hours_since_promotion, 1)} ({result.promoted_at_source})",
    )
    slo = result.thresholds.slo
    for role, check in result.slo_checks:
        table.add_row(
            f"SLO v{check.version} ({role})",
            f"p99 <= {slo.p99_latency_ms:g} ms, 5xx <= {slo.error_rate:.2%}",
            slo_summary(check, slo),
        )
    for reason in result.decision.reasons:
        table.add_row("reason", "", reason)
    for note in result.decision.notes:
        table.add_row("note", "", note)
    for label, path in (("report", result.report_html), ("summary", result.summary_json)):
        if path:
            table.add_row(label, "", str(path))
    if result.pull_request:
        verb = "opened" if result.pull_request.created else "updated"
        table.add_row("pull request", verb, result.pull_request.url)
    elif result.pull_request_note:
        table.add_row("pull request", "", result.pull_request_note)
    return table


def recover_log() -> None:
    """Commit what replicas killed on this machine left in the log's write-ahead files."""
    from services.settings import get_settings
    from services.wal import recover

    root = get_settings().log_wal_dir
    try:
        done = recover(root)
    except OSError as exc:
        fail(f"recovering the write-ahead files under {root} failed (nothing is lost): {exc}")
    console.print(
        f"inference log: {done.rows} rows in {done.segments} segments of {done.writers} "
        f"stopped writers committed from {root}"
    )


def register(app: typer.Typer) -> None:
    """Add this area's commands to `app`."""
    log_app = typer.Typer(help="The inference log.", no_args_is_help=True)
    app.add_typer(log_app, name="log")

    @log_app.command("recover")
    def log_recover() -> None:
        """Write as Parquet parts the rows that killed replicas left in this machine's
        write-ahead files (MLOPS_LOG_WAL_DIR), exactly once; safe to rerun and to run beside
        live replicas (their files are locked)."""
        recover_log()

    @app.command()
    def monitor(
        service: Annotated[
            list[str] | None, typer.Option("--service", "-s", help="Service(s) to check.")
        ] = None,
        all_services: Annotated[
            bool, typer.Option("--all", help="Check every service of the catalogue.")
        ] = False,
        open_pr: Annotated[
            bool,
            typer.Option("--open-pr", help="Open or update a retrain/revert pull request."),
        ] = False,
        since: Annotated[
            str | None,
            typer.Option(
                help="Window start: a duration (24h, 90m, 7d) or ISO time (UTC). Default: "
                "the last 24h, but not before the production version was promoted."
            ),
        ] = None,
        fail_on_slo: Annotated[
            bool,
            typer.Option(
                "--fail-on-slo",
                help="Exit 1 when a production version breaches an SLO (after every check).",
            ),
        ] = False,
    ) -> None:
        """Drift, performance and SLOs of production versions -> retrain / revert / none.

        Exits 0 whatever the decision; non-zero on errors (including a failed PR), and with
        --fail-on-slo when a production version breaches an SLO.
        """
        from monitoring.monitor import MonitorOptions, monitor_service
        from monitoring.production import NotInProduction
        from monitoring.window import parse_since
        from services.spec import service_names

        if bool(service) == all_services:
            fail("give --service S (repeatable) or --all")
        if since is not None:
            run_guarded(lambda: parse_since(since))
        names = service_names() if all_services else list(service or [])
        options = MonitorOptions(since=since, open_pr=open_pr)
        recover_log()  # rows of killed replicas belong in the window
        errors, breaches = 0, []
        for name in names:
            try:
                result: Any = run_guarded(lambda name=name: monitor_service(name, options))
            except NotInProduction as exc:
                console.print(f"[dim]{name}: skipped: {exc}[/]")
                continue
            console.print(result_table(result))
            errors += int(result.pull_request_error)
            breaches += [f"{name}: {text}" for text in result.decision.slo_breaches]
        if errors:
            fail(f"{errors} pull request(s) could not be opened; see the summaries")
        if fail_on_slo and breaches:
            fail("SLO breached: " + "; ".join(breaches))

    @app.command()
    def simulate(
        service: Annotated[str, typer.Option("--service", "-s", help="Service name.")],
        rows: Annotated[int, typer.Option(min=1, max=1_000_000, help="Rows to send.")] = 1_000,
        drift: Annotated[DriftKind, typer.Option(help="Simulated drift.")] = DriftKind.none,  # type: ignore[attr-defined]
        feedback: Annotated[
            bool, typer.Option("--feedback", help="Also POST the true label of every row.")
        ] = False,
        batch_size: Annotated[int, typer.Option(min=1, max=1_000, help="Rows per request.")] = 20,
        seed: Annotated[int, typer.Option(help="Generator (or sampling) seed.")] = 0,
        concurrency: Annotated[int, typer.Option(min=1, max=64)] = 4,
    ) -> None:
        """Send traffic to the serving endpoints over HTTP (real requests): generated rows, or
        rows sampled from the service's snapshot when it has no generator."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        from monitoring.simulate import SimulationConfig
        from monitoring.simulate import simulate as run_simulation
        from services.settings import get_settings
        from services.spec import load_spec
        from services.traffic import traffic_rows

        spec = run_guarded(lambda: load_spec(service))
        url = get_settings().serve_url
        frame = run_guarded(lambda: traffic_rows(spec, rows, seed, drift.value))
        config = SimulationConfig(rows, drift.value, feedback, batch_size, seed, concurrency)
        columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(f"{service} -> {url}", total=rows)
            result = run_simulation(
                spec, url, config, progress=lambda n: progress.advance(task, n), rows=frame
            )
        versions = ", ".join(f"v{v}: {n}" for v, n in sorted(result.versions.items())) or "none"
        console.print(
            f"{service}: sent {result.sent}, failed {result.failed}, "
            f"feedback {result.feedback_sent} (failed {result.feedback_failed})"
        )
        console.print(f"rows per model version: {versions}")
        if result.errors:
            console.print(f"errors: {dict(result.errors)}")
        if result.sent == 0:
            fail(f"no request succeeded against {url}/{service}; is the service deployed?")
