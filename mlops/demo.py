"""`mlops demo`: the whole loop on embedded defaults, step by step, ending in a summary.

stack up -> dvc repro (v1 of every service) -> promote v1 -> healthy traffic -> drifted
traffic to one service -> monitor opens a retrain pull request (local mode) -> the retrain
branch is reproduced (`dvc repro` on it, v2) -> v2 promoted -> summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from services.settings import get_settings, repo_root, tool
from services.spec import load_catalogue
from serving.protocol import RECORDS

console = Console()
DRIFTED_SERVICE = "fraud-detection"
HEALTHY_ROWS = 1_500
DRIFTED_ROWS = 1_500
LOG_FLUSH_WAIT_S = 4.0  # replicas flush the inference log every 2 s


@dataclass
class DemoState:
    versions: dict[str, str] = field(default_factory=dict)  # what production serves
    metrics: dict[str, str] = field(default_factory=dict)
    monitor: dict[str, Any] = field(default_factory=dict)  # service -> MonitorResult


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

    config = SimulationConfig(rows=rows, drift=drift, feedback=True, seed=seed)  # type: ignore[arg-type]
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


def summary(state: DemoState) -> None:
    from services.catalogue_report import registered_versions

    settings = get_settings()
    table = Table(
        "service",
        "serving",
        "versions (metric)",
        "drift share",
        "decision",
        "pull request",
        "report",
    )
    rows = registered_versions(list(load_catalogue()))
    for service in load_catalogue():
        versions = ", ".join(
            f"v{r['version']} ({r['metric']}={float(r['value']):.3f})"
            for r in rows
            if r["service"] == service
        )
        result = state.monitor.get(service)
        table.add_row(
            service,
            f"v{state.versions.get(service, '-')}",
            versions,
            _share(result) if result else "-",
            result.action if result else "-",
            result.pull_request.url if result and result.pull_request else "-",
            str(result.report_html) if result and result.report_html else "-",
        )
    console.print(table)
    console.print(f"MLflow UI      {settings.tracking_uri}")
    console.print(f"Ray dashboard  {settings.dashboard_url}")
    for service in load_catalogue():
        console.print(f"OpenAPI docs   {settings.serve_url}/{service}/docs")


def run_demo() -> DemoState:
    from mlops import stack

    state = DemoState()
    repo = repo_root()
    step("1. Local stack: MLflow server + Ray head")
    for component in stack.up():
        console.print(f"{component.name}: {component.url} healthy={component.healthy}")
    step("2. Training: dvc repro (every service)")
    run([tool("mlops"), "data", "init"], repo)
    run([tool("dvc"), "repro"], repo)
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
    step(f"7. Promote the retrained {DRIFTED_SERVICE}")
    promote_latest(state, DRIFTED_SERVICE)
    step("Summary")
    summary(state)
    console.print(json.dumps(state.versions))
    return state
