"""Real-time serving side by side in one run: this project through its ingress and straight to
one replica, the servers a user would pick instead, and the bare limits, each at 1 and 16
connections, in rounds that go through every server in turn (a drift of the machine during the
run touches each alike); every figure is the median of the rounds, with their min and max.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.ab import Measure
from benchmarks.load import run_wrk

log = logging.getLogger(__name__)
CONNECTIONS = (1, 16)
ROUNDS = 3  # odd: the median is one measured round, robust to one disturbed round
PEER_WARMUP_S = 3  # a server that does not autoscale only needs its connections warm
MAX_ERROR_SHARE = 0.01  # a run with more non-2xx answers measures a broken server
# targets at 16 connections (1 connection for the p50), each a ratio against a server run
# next to this project in the same run
PEER_MULTIPLE = 1.5  # requests/s >= 1.5x the best peer's
BARE_SHARE = 0.9  # requests/s >= 90% of the bare server's
P99_RATIO = 1.2  # p99 <= 1.2x the bare server's
P50_RATIO = 1.5  # p50 at 1 connection <= 1.5x the bare server's


@dataclass(frozen=True)
class Target:
    """One server as the bench loads it; `url` is resolved each round (Serve may have replaced
    the replica that a direct URL names)."""

    name: str
    url: Callable[[], str]
    body: str
    does: str  # what it does per request, stated next to its figures
    setup: str  # its processes and settings (the CPU budget it gets)
    kind: str = "peer"  # "ours", "ours-direct", "floor", "peer", "bare" or "limit"
    connections: tuple[int, ...] = CONNECTIONS
    warmup_s: int = PEER_WARMUP_S
    replicas: Callable[[], int] | None = None  # an autoscaled server's replicas, read each run


def replica_url(service: str, path: str, state_dir: Path) -> str:
    """`path` on one of `service`'s Realtime replicas, reached on its own HTTP port (the
    backend servers of the HAProxy ingress's newest configuration)."""
    from serving.manifest import REALTIME

    configs = sorted(state_dir.glob("*/haproxy.cfg"), key=lambda p: p.stat().st_mtime)
    prefix = f"SERVE_REPLICA_{service}-{REALTIME}-"
    for config in reversed(configs):
        for line in config.read_text().splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "server" and words[1].startswith(prefix):
                return f"http://{words[2]}/{service}/{path}"
    raise LookupError(f"no {service} replica in the HAProxy configuration under {state_dir}")


def measure(
    targets: Sequence[Target], duration_s: int, rounds: int = ROUNDS, load: Measure = run_wrk
) -> list[dict[str, Any]]:
    """Per server and connection count, `rounds` runs of `duration_s` (each round after the
    server's warm-up at the highest count)."""
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {
        (t.name, c): [] for t in targets for c in t.connections
    }
    for round_ in range(rounds):
        for target in targets:
            url = target.url()
            log.info("round %d: %s (%s)", round_ + 1, target.name, url)
            load(target.name, url, target.body, max(CONNECTIONS), target.warmup_s)
            for connections in target.connections:
                result = load(target.name, url, target.body, connections, duration_s)
                answered = result.requests_per_s * duration_s
                if result.non_2xx > MAX_ERROR_SHARE * answered:
                    raise RuntimeError(
                        f"{target.name} ({url}) answered {result.non_2xx:,} of {answered:,.0f} "
                        "requests with an error: its figures would time the error path"
                    )
                run = asdict(result)
                if target.replicas is not None:  # what autoscaling gave the load just measured
                    run["replicas"] = target.replicas()
                runs[(target.name, connections)].append(run)
    return [
        {
            "name": t.name,
            "kind": t.kind,
            "does": t.does,
            "setup": t.setup,
            "connections": c,
            "runs": runs[(t.name, c)],
        }
        for t in targets
        for c in t.connections
    ]


def figure(entry: dict[str, Any], field: str) -> float:
    """The median over an entry's rounds."""
    return statistics.median(run[field] for run in entry["runs"])


def _spread(entry: dict[str, Any], field: str, digits: int) -> str:
    values = [run[field] for run in entry["runs"]]
    return f"{figure(entry, field):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def _verdict(met: bool) -> str:
    return "met" if met else "missed"


def report_lines(entries: list[dict[str, Any]]) -> list[str]:
    """The table (medians and min-max of the rounds), the targets, and what each server does."""
    lines = [
        "## Real-time (single-record requests, wrk)",
        "",
        f"Median of {len(entries[0]['runs'])} rounds (min-max); CPU ms/request is the whole "
        "machine's (server, ingress and wrk) per request.",
        "",
        "| server | connections | requests/s | p50 ms | p99 ms | non-2xx | CPU ms/request |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in entries:
        lines.append(
            f"| {e['name']} | {e['connections']} | {_spread(e, 'requests_per_s', 0)} | "
            f"{_spread(e, 'p50_ms', 2)} | {_spread(e, 'p99_ms', 2)} | "
            f"{sum(run['non_2xx'] for run in e['runs'])} | "
            f"{figure(e, 'cpu_ms_per_request'):.2f} |"
        )
    at = {(e["kind"], e["name"], e["connections"]): e for e in entries}

    def one(kind: str, connections: int) -> dict[str, Any]:
        return next(e for (k, _, c), e in at.items() if k == kind and c == connections)

    ours, bare = one("ours", 16), one("bare", 16)
    peers = [e for (k, _, c), e in at.items() if k == "peer" and c == 16]
    rate = figure(ours, "requests_per_s")
    lines.append("")
    if peers:
        best = max(peers, key=lambda e: figure(e, "requests_per_s"))
        multiple = rate / figure(best, "requests_per_s")
        lines.append(
            f"- 16 connections: {multiple:.2f}x the requests/s of the best peer ({best['name']}; "
            f"target >= {PEER_MULTIPLE}x: {_verdict(multiple >= PEER_MULTIPLE)})."
        )
    share = rate / figure(bare, "requests_per_s")
    p99 = figure(ours, "p99_ms") / figure(bare, "p99_ms")
    p50 = figure(one("ours", 1), "p50_ms") / figure(one("bare", 1), "p50_ms")
    lines += [
        f"- 16 connections: {share:.0%} of the requests/s of {bare['name']} (target >= "
        f"{BARE_SHARE:.0%}: {_verdict(share >= BARE_SHARE)}); p99 {p99:.2f}x its p99 (target <= "
        f"{P99_RATIO}x: {_verdict(p99 <= P99_RATIO)}).",
        f"- 1 connection: p50 {p50:.2f}x the bare server's (target <= {P50_RATIO}x: "
        f"{_verdict(p50 <= P50_RATIO)}).",
    ]
    if any(kind == "floor" for kind, _, _ in at):
        floor = figure(one("floor", 16), "requests_per_s")
        floor_p50 = figure(one("floor", 1), "p50_ms") / figure(one("bare", 1), "p50_ms")
        lines.append(
            f"- Ray Serve's floor, an application of the same shape that does no work per "
            f"request: {floor / figure(bare, 'requests_per_s'):.0%} of the requests/s of "
            f"{bare['name']} at 16 connections, p50 {floor_p50:.2f}x its p50 at 1 connection; "
            f"this project serves {rate / floor:.0%} of the floor's requests/s."
        )
    if "replicas" in ours["runs"][0]:
        counts = ", ".join(str(run["replicas"]) for run in ours["runs"])
        lines.append(
            f"- {ours['name']}: Realtime replicas running at the end of each 16-connection run "
            f"(autoscaled): {counts}."
        )
    if share < BARE_SHARE or p99 > P99_RATIO or p50 > P50_RATIO:
        lines.append(
            '- What bounds a missed target is measured below: "Where a request\'s time goes" '
            '(the parts of the 1-connection p50) and "What bounds real-time throughput" (CPU '
            "per request at 16 connections)."
        )
    lines += [
        "",
        "| server | processes and settings | what it does per request |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {e['name']} | {e.get('setup', '-')} | {e['does']} |"
        for e in entries
        if e["connections"] == 1
    ]
    return lines


def bound_lines(entries: list[dict[str, Any]], cores: int) -> list[str]:
    """What bounds real-time throughput: the machine's CPU per request at 16 connections through
    this project, Ray Serve's floor (when measured) and the bare server."""
    cpu = {
        e["kind"]: figure(e, "cpu_ms_per_request")
        for e in entries
        if e["connections"] == max(CONNECTIONS)
    }
    if not (cpu.get("ours") and cpu.get("bare")):
        return []
    ours, bare = cpu["ours"], cpu["bare"]
    lines = [
        "",
        "## What bounds real-time throughput",
        "",
        f"At {max(CONNECTIONS)} connections the machine spends {ours:.2f} CPU ms per request "
        f"through this project against {bare:.2f} ms for the bare server (wrk included in both). "
        f"With {cores} cores that caps this project at about {cores * 1000 / ours:,.0f} "
        f"requests/s and the bare server at {cores * 1000 / bare:,.0f}.",
    ]
    if floor := cpu.get("floor"):
        lines[-1] += (
            f" Ray Serve's floor spends {floor:.2f} ms: of the {ours - bare:.2f} ms this project "
            f"spends beyond the bare server, {floor - bare:.2f} ms is Ray Serve's shape (HAProxy, "
            f"the replica's HTTP server, FastAPI, Ray Serve's request path) and {ours - floor:.2f}"
            " ms what this project's request path adds on it: validation, request merging, the "
            "model, the answer, the inference log and request telemetry, with Ray Serve's own "
            "work for each."
        )
    lines[-1] += (
        ' "Where a request\'s time goes" splits one request into its parts, "Where a replica\'s '
        "time goes\" a replica's time under this load into its layers."
    )
    return lines
