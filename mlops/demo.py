"""`mlops demo`: the whole loop on a local stack, step by step, ending in a summary.

On embedded defaults, or with `--profile production` on PostgreSQL, S3 and a Ray cluster of
several nodes (this process a client of the profile, the DVC remote a bucket of its S3 store).

stack up -> dvc repro (v1 of every service) -> promote v1 -> healthy traffic -> drifted
traffic to one service -> monitor opens a retrain pull request (local mode) -> the retrain
branch is reproduced (`dvc repro` on it, v2) -> v2 rolled out (shadow, canary, production:
each step a commit, analysed on live traffic) -> summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich import box
from rich.console import Console
from rich.table import Column, Table

from services.settings import Settings, StackProfile, get_settings, repo_root, tool
from services.spec import load_catalogue
from serving.protocol import RECORDS

DRIFTED_SERVICE = "fraud-detection"
HEALTHY_ROWS = 1_500
DRIFTED_ROWS = 1_500
ROWS_PER_REQUEST = 5  # 300 requests per 1,500 rows: enough for the SLOs to be judged
LOG_FLUSH_WAIT_S = 4.0  # replicas flush the inference log every 2 s
STACK_TITLES: dict[StackProfile, str] = {
    "embedded": "Local stack: MLflow server + Ray head",
    "production": "Production profile: PostgreSQL, S3, MLflow (basic auth), Ray head + workers",
}
WIDE = 160  # columns of the output when it is not a terminal (`make demo > demo.log`)


def demo_console(**options: Any) -> Console:
    """Lines never wrapped (paths and URLs stay whole); wide tables when not on a terminal,
    where Rich would otherwise assume 80 columns and cut cells."""
    out = Console(soft_wrap=True, **options)
    if not out.is_terminal:
        out.width = max(out.width, WIDE)
    return out


console = demo_console()


@dataclass
class DemoState:
    versions: dict[str, str] = field(default_factory=dict)  # what production serves
    metrics: dict[str, str] = field(default_factory=dict)
    monitor: dict[str, Any] = field(default_factory=dict)  # service -> MonitorResult
    rollout: list[Any] = field(default_factory=list)  # the analysis of every step (in order)


def step(title: str) -> None:
    console.rule(f"[bold]{title}")


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    """Run a tool with this environment's console scripts first on PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    subprocess.run(command, cwd=cwd, check=True, env=os.environ | {"PATH": path} | (env or {}))


def latest_version(service: str) -> str:
    from services.registry import connect

    versions = connect().search_model_versions(f"name = '{service}'")
    return str(max(int(v.version) for v in versions))


def promote_latest(state: DemoState, service: str) -> None:
    from serving.promote import promote

    version = latest_version(service)
    promote(f"{service}@v{version}")
    state.versions[service] = version
    console.print(f"{service}: v{version} promoted and serving")


def roll_out_latest(state: DemoState, service: str) -> None:
    """Start the rollout of the newest version, then per step: live traffic with labels until
    the step has its evidence (requests and minutes), the analysis, and the step it decides
    (each a commit on main)."""
    from monitoring.rollout_job import analyse_and_apply
    from monitoring.rollout_result import RolloutDecision
    from serving.manifest import manifest_path, rollouts
    from serving.rollout import describe, policy, start

    version = latest_version(service)
    step_ = start(f"{service}@v{version}")
    console.print(f"{service}: {step_.message.splitlines()[0]}")
    rules, seed = policy(service), 300
    while service in rollouts(manifest_path()):
        traffic = rollouts(manifest_path())[service]
        ready_at = traffic.since.timestamp() + rules.min_minutes * 60 if traffic.since else 0
        share = traffic.weight / 100
        send_traffic(
            service, int(rules.min_requests * ROWS_PER_REQUEST * 1.2 / share), "none", seed
        )
        seed += 1
        time.sleep(max(ready_at - time.time(), 0) + LOG_FLUSH_WAIT_S)
        outcome = analyse_and_apply(service, manifest_path(), apply=True)
        state.rollout.append(outcome.analysis)
        console.print(
            f"{service}, {describe(traffic)}: [bold]{outcome.decision}[/] ({outcome.applied})"
        )
        if outcome.decision == RolloutDecision.ABORT:
            raise RuntimeError(f"{service} v{version}: the rollout was aborted: {outcome.markdown}")
    state.versions[service] = version
    console.print(f"{service}: v{version} serves all traffic")


def rollout_table(analyses: list[Any]) -> Table:
    """Each analysed step: its traffic, decision and every gate's figures."""
    table = Table(
        Column("step", no_wrap=True),
        Column("decision", no_wrap=True),
        *(Column(g.name, overflow="fold") for g in (analyses[0].evidence, *analyses[0].gates)),
        box=box.SIMPLE_HEAD,
    )
    for a in analyses:
        table.add_row(
            f"{a.step} {a.mode} {a.weight:g}% v{a.candidate}",
            a.decision.value,
            *(f"{g.verdict}: {g.text}" for g in (a.evidence, *a.gates)),
        )
    return table


def show_requests() -> None:
    from services.schema import frame_to_records
    from services.traffic import traffic_rows

    base = get_settings().serve_url
    for name, spec in load_catalogue().items():
        body = {RECORDS: frame_to_records(spec, traffic_rows(spec, 2, 7)[spec.feature_names])}
        response = httpx.post(f"{base}/{name}/predict", json=body, timeout=30)
        console.print(f"POST {base}/{name}/predict -> {response.status_code}")
        console.print_json(response.text)


def send_traffic(service: str, rows: int, drift: str, seed: int) -> None:
    from monitoring.simulate import SimulationConfig, simulate
    from services.spec import load_spec

    config = SimulationConfig(
        rows=rows,
        drift=drift,  # type: ignore[arg-type]
        feedback=True,
        batch_size=ROWS_PER_REQUEST,
        seed=seed,
    )
    result = simulate(load_spec(service), get_settings().serve_url, config)
    console.print(
        f"{service}: {result.sent} predictions ({drift} traffic), {result.failed} failed, "
        f"{result.feedback_sent} labels"
    )


def monitor(state: DemoState, services: list[str]) -> None:
    from monitoring.monitor import MonitorOptions, monitor_service

    time.sleep(LOG_FLUSH_WAIT_S)
    for service in services:
        result = monitor_service(service, MonitorOptions(open_pr=True))
        state.monitor[service] = result
        pr = result.pull_request.url if result.pull_request else (result.pull_request_note or "-")
        console.print(
            f"{service}: decision [bold]{result.action}[/] "
            f"(feature drift share {_share(result)}); PR: {pr}"
        )


def _share(result: Any) -> str:
    share = result.measurements.feature_drift_share
    return "-" if share is None else f"{share:.2f}"


def retrain_from_branch(branch: str, service: str) -> None:
    """Reproduce the retrain branch in a scratch worktree: `dvc pull` + `dvc repro`."""
    from monitoring.retrain import share_dvc_state
    from services.gitutil import scratch_worktree

    repo = repo_root()
    with scratch_worktree(repo, ref=branch) as tree:
        share_dvc_state(tree, repo)
        env = {"MLOPS_REPO_ROOT": str(tree), "MLOPS_HOME": str(get_settings().home)}
        run([tool("dvc"), "pull", "--quiet", f"data/{service}/snapshot.parquet.dvc"], tree, env)
        run([tool("dvc"), "repro", f"register@{service}"], tree, env)


def _requests(result: Any) -> tuple[str, str, str]:
    """p99 latency, 5xx rate and SLO verdict of the production version the monitor measured."""
    if result is None:
        return "-", "-", "-"
    stats, verdict = result.measurements.requests, result.slo_checks[0][1].status.value
    if stats is None:
        return "-", "-", verdict
    p99 = "-" if stats.p99_latency_ms is None else f"{stats.p99_latency_ms:.1f} ms"
    return p99, f"{stats.server_error_rate:.2%}", verdict


def summary_table(
    state: DemoState, registered: list[dict[str, Any]], settings: Settings
) -> tuple[Table, list[str]]:
    """Short figures in the table (folded, never cut, when narrow); paths and URLs below it,
    one whole line each."""
    names = ("versions (metric)", "drift share", "p99 latency", "5xx rate", "SLO", "decision")
    table = Table(
        Column("service", no_wrap=True),
        Column("serving", no_wrap=True),
        *(Column(name, overflow="fold") for name in names),
        box=box.SIMPLE_HEAD,
    )
    links = []
    for service in load_catalogue():
        versions = "\n".join(
            f"v{r['version']} ({r['metric']}={float(r['value']):.3f})"
            for r in registered
            if r["service"] == service
        )
        result = state.monitor.get(service)
        table.add_row(
            service,
            f"v{state.versions.get(service, '-')}",
            versions,
            _share(result) if result else "-",
            *_requests(result),
            result.action if result else "-",
        )
        if result and result.pull_request:
            links.append(f"{service} pull request: {result.pull_request.url}")
        if result and result.report_html:
            links.append(f"{service} Evidently report: {result.report_html}")
    links += [f"MLflow UI: {settings.tracking_uri}", f"Ray dashboard: {settings.dashboard_url}"]
    links.append(f"Prometheus metrics: {settings.metrics_url}")
    links += [f"{name} OpenAPI docs: {settings.serve_url}/{name}/docs" for name in load_catalogue()]
    return table, links


def summary(state: DemoState) -> None:
    from services.catalogue_report import registered_versions

    table, links = summary_table(state, registered_versions(list(load_catalogue())), get_settings())
    console.print(table)
    if state.rollout:
        console.print(f"Rollout of {DRIFTED_SERVICE} v{state.rollout[0].candidate}, step by step:")
        console.print(rollout_table(state.rollout))
    for line in links:
        console.print(line, markup=False, highlight=False)


def run_demo(profile: StackProfile = "embedded") -> DemoState:
    from mlops import stack
    from mlops.production.profile import as_client

    repo = repo_root()
    step(f"1. {STACK_TITLES[profile]}")
    for component in stack.up(profile=profile):
        console.print(f"{component.name}: {component.url} healthy={component.healthy}")
    with as_client(repo) if profile == "production" else contextlib.nullcontext():
        return run_loop(repo)


def run_loop(repo: Path) -> DemoState:
    state = DemoState()
    step("2. Training: dvc repro (every service), dvc push")
    run([tool("mlops"), "data", "init"], repo)
    run([tool("dvc"), "repro"], repo)
    run([tool("dvc"), "push", "--quiet"], repo)
    step("3. Promote the newest version of every service")
    for service in load_catalogue():
        promote_latest(state, service)
    show_requests()
    step("4. Healthy traffic with labels")
    for index, service in enumerate(load_catalogue()):
        send_traffic(service, HEALTHY_ROWS, "none", seed=100 + index)
    step(f"5. Drifted traffic to {DRIFTED_SERVICE}, then the monitor")
    send_traffic(DRIFTED_SERVICE, DRIFTED_ROWS, "covariate", seed=200)
    monitor(state, list(load_catalogue()))
    result = state.monitor[DRIFTED_SERVICE]
    if result.pull_request is None:
        raise RuntimeError(
            f"{DRIFTED_SERVICE}: expected a retrain pull request, got {result.action}"
        )
    step(f"6. Reproduce {result.pull_request.branch} (dvc repro on the retrain branch)")
    retrain_from_branch(result.pull_request.branch, DRIFTED_SERVICE)
    step(f"7. Roll out the retrained {DRIFTED_SERVICE}: shadow, canary, production")
    roll_out_latest(state, DRIFTED_SERVICE)
    step("Summary")
    summary(state)
    console.print(json.dumps(state.versions))
    return state
