"""Serving and pipeline speed side by side, in one run, on the same fraud-detection model.

Real-time: this project's endpoint (default ingress) vs `mlflow models serve` vs a bare
starlette+uvicorn process (the practical limit), at 1 and 16 connections (wrk).
Batch: 1,000,000 rows through /batch, through `mlops batch-score` (and the same job done by Ray
Data), in-process.
Pipeline and operations: `dvc repro` cold/warm, `mlops promote` wall time, the monitor on
100,000 rows. Writes benchmarks/RESULTS.md and benchmarks/latency.png.

    python -m benchmarks.bench_serving [--duration 10] [--rows 1000000]   (or: make bench)
    python -m benchmarks.bench_serving --sections durability     (one part again, others kept)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from benchmarks import (
    ab,
    breakdown,
    durability_ab,
    haproxy_ab,
    merging_ab,
    replica_profile,
    replicas_ab,
    rollout_ab,
    runtime_ab,
    telemetry_ab,
)
from benchmarks import realtime as realtime_bench
from benchmarks.servers import BIN, server
from services.settings import PACKAGE_REPO
from serving.api import JSON_TYPE, PARQUET_TYPE
from serving.batch_score import SCORERS
from serving.protocol import DF_RECORDS, RECORDS

log = logging.getLogger(__name__)
SERVICE = "fraud-detection"
HERE = Path(__file__).resolve().parent
WORKERS = 2  # every server gets the machine's 2 cores: 2 processes/replicas each
BATCH_SCORE_COPIES = 5  # batch-score reads 5 files of the batch rows: start-up cost amortized
BATCH_SCORE_SMALL_ROWS = 1_000  # batch-score on this few rows measures its fixed start-up
BATCH_CLIENTS = 2  # the Batch deployment's max_ongoing_requests: upload overlaps scoring
BATCH_ANSWERS = {"parquet": PARQUET_TYPE, "json": JSON_TYPE}  # /batch's answers, by Accept
# what `--sections` can choose; the pipeline and the promotion, the set-up, are always measured
SECTIONS = (
    "realtime",
    "profile",
    "runtime",
    "merging",
    "replicas",
    "telemetry",
    "rollout",
    "durability",
    "haproxy",
    "batch",
    "monitor",
)
BATCH_ENDPOINT_SHARE = 0.75  # /batch: rows/s >= 75% of in-process
BATCH_SCORE_SHARE = 0.5  # `mlops batch-score` as a whole command on 5M rows: >= 50%
WARMUP_S = 30  # > upscale_delay_s + a replica's start-up: autoscaling has settled before measuring


OURS_DOES = (
    "reads named records, validates each field against the served version's spec (types, "
    "ranges, categories), encodes, predicts (concurrent requests merged into one model call), "
    "answers with row ids, appends every row to the write-ahead inference log, records request "
    "metrics"
)
MLFLOW_DOES = (
    "parses `dataframe_records` into pandas, checks them against the model signature, encodes "
    "and predicts through the pyfunc"
)
FLOOR_DOES = "reads the body and answers a fixed prediction: no validation, model or log"
BARE_DOES = "parses the JSON records, encodes, predicts, answers; no validation, no log"
OURS_SETUP = (
    f"Ray Serve 2.60, HAProxy ingress; 1-{WORKERS} Realtime replicas (autoscaled), each one "
    "process, XGBoost nthread 1"
)
MLFLOW_SETUP = f"`mlflow models serve -w {WORKERS} --env-manager local`"
BARE_SETUP = f"uvicorn --workers {WORKERS}, XGBoost nthread 1"


def realtime(body: str, booster: Path, version: str, duration_s: int) -> list[dict[str, Any]]:
    """The same single-record request against every server, all running at once, in rounds."""
    from benchmarks import peer_servers, serve_floor
    from benchmarks.bench_model_limit import bare_onnx_command
    from mlops.sandbox import free_port
    from mlops.stack import HAPROXY_STATE_DIR
    from services.encoding import FeatureEncoder
    from services.settings import get_settings
    from services.spec import load_spec

    records = json.loads(body)[RECORDS]
    row = FeatureEncoder(load_spec(SERVICE)).encode_records(records)[0].tolist()
    targets = [
        realtime_bench.Target(
            "this project (Ray Serve, HAProxy ingress)",
            lambda: f"{get_settings().serve_url}/{SERVICE}/predict",
            body,
            OURS_DOES,
            OURS_SETUP,
            "ours",
            warmup_s=WARMUP_S,  # steady state first: replicas scaled up
            replicas=lambda: len(ab.running_replicas(SERVICE)),
        ),
        realtime_bench.Target(
            "this project, one replica reached directly",
            lambda: realtime_bench.replica_url(SERVICE, "predict", Path(HAPROXY_STATE_DIR)),
            body,
            OURS_DOES,
            "the same replicas, one reached on its own HTTP port (no ingress)",
            "ours-direct",
            connections=(1,),  # one of the replicas: half the capacity at 16
        ),
    ]
    with contextlib.ExitStack() as running:
        floor_url = running.enter_context(serve_floor.deployed(SERVICE, WORKERS))
        targets.append(
            realtime_bench.Target(
                "Ray Serve's floor (a deployment that does no work)",
                lambda: floor_url,
                body,
                FLOOR_DOES,
                f"Ray Serve 2.60, HAProxy ingress; {WORKERS} replicas of a FastAPI deployment, "
                "the Realtime deployment's settings",
                "floor",
            )
        )

        def started(
            command: list[str], url: str, env: dict[str, str], health_url: str = "", **target: Any
        ) -> None:
            """Start a server for the whole measurement and load it as `target` says."""
            running.enter_context(server(command, health_url or url, env))
            targets.append(realtime_bench.Target(url=lambda: url, **target))

        port = free_port()
        started(
            [
                *(str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{SERVICE}/{version}"),
                *("--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)),
                *("-w", str(WORKERS)),
            ],
            f"http://127.0.0.1:{port}/invocations",
            {},
            health_url=f"http://127.0.0.1:{port}/ping",
            name="mlflow models serve",
            body=json.dumps({DF_RECORDS: records}),
            does=MLFLOW_DOES,
            setup=MLFLOW_SETUP,
        )
        for peer in peer_servers.PEERS:
            url = running.enter_context(peer_servers.running(peer, booster, free_port()))
            targets.append(
                realtime_bench.Target(
                    peer.name, lambda url=url: url, peer.body(row), peer.per_request, peer.setup
                )
            )
        port = free_port()
        started(
            [
                *(str(BIN / "uvicorn"), "benchmarks.bare_server:app", "--host", "127.0.0.1"),
                *("--port", str(port), "--workers", str(WORKERS), "--log-level", "warning"),
            ],
            f"http://127.0.0.1:{port}/predict",
            {"MLOPS_BENCH_BOOSTER": str(booster), "MLOPS_BENCH_SERVICE": SERVICE},
            name="bare starlette + inplace_predict",
            body=body,
            does=BARE_DOES,
            setup=BARE_SETUP,
            kind="bare",
        )
        port = free_port()
        onnx_command, onnx_env = bare_onnx_command(booster, port, WORKERS)
        started(
            onnx_command,
            f"http://127.0.0.1:{port}/predict",
            onnx_env,
            name="bare starlette + ONNX Runtime (the model's limit)",
            body=body,
            does=BARE_DOES + "; the booster converted to ONNX (onnxmltools)",
            setup=BARE_SETUP.replace("XGBoost nthread 1", "ONNX Runtime, one thread"),
            kind="limit",
        )
        return realtime_bench.measure(targets, duration_s)
        return realtime_bench.measure(targets, duration_s)


def batch(rows: int, workdir: Path, version: str) -> dict[str, Any]:
    """Rows/s in-process, through `mlops batch-score` and the same job done by Ray Data (whole
    commands on 1,000 rows and on 5 files of `rows`, alternating), and through /batch (chunks of
    max_batch_rows) with the Batch deployment held at the spec's `max_replicas` and at one
    replica or one per core, alternating for `ab.ROUNDS` rounds."""
    from services.datagen import generate
    from services.settings import get_settings
    from services.spec import load_spec
    from serving.deploy import deploy
    from serving.deployments import BATCH
    from serving.manifest import manifest_path
    from serving.model_slot import load_version

    spec = load_spec(SERVICE)
    frame = generate(spec, rows, seed=11)[spec.feature_names]
    model = load_version(SERVICE, version, spec.serving.max_request_rows).model
    in_process: list[float] = []

    def in_process_rate() -> float:
        """Rows/s of one call encoding and predicting all the rows, in this process."""
        start = time.perf_counter()
        model.predict_matrix(model.encoder.encode_frame(frame))
        return rows / (time.perf_counter() - start)

    inputs = {
        "small": (frame.head(BATCH_SCORE_SMALL_ROWS), 1),
        "large": (frame, BATCH_SCORE_COPIES),
    }
    for name, (rows_of, copies) in inputs.items():
        (workdir / name).mkdir()
        for part in range(copies):
            rows_of.to_parquet(workdir / name / f"part-{part}.parquet", index=False)
    mlops = [str(BIN / "mlops"), "batch-score", "--service", SERVICE, "--version", version]
    ray_data = [sys.executable, "-m", "benchmarks.ray_data_batch", SERVICE, version]
    commands: dict[str, Callable[[str, str], list[str]]] = {  # (input, output) -> command
        "actors": lambda source, output: [*mlops, "--input", source, "--output", output],
        "ray_data": lambda source, output: [*ray_data, source, output],
    }
    batch_score_s: dict[str, dict[str, list[float]]] = {
        side: {name: [] for name in inputs} for side in commands
    }
    for round_ in range(ab.ROUNDS):  # whole commands, as a user runs them: start-up included
        in_process.append(in_process_rate())  # the baseline too, in every round
        for side, command in commands.items():
            for name in inputs:
                output = str(workdir / f"{name}-{side}-{round_}")
                start = time.perf_counter()
                subprocess.run(
                    command(str(workdir / name), output),
                    check=True,
                    capture_output=True,
                    cwd=PACKAGE_REPO,
                )
                batch_score_s[side][name].append(time.perf_counter() - start)
    batch_score_rows = rows * BATCH_SCORE_COPIES

    chunk = spec.serving.max_batch_rows
    bodies = []
    for begin in range(0, rows, chunk):
        buffer = io.BytesIO()
        frame.iloc[begin : begin + chunk].to_parquet(buffer, index=False)
        bodies.append(buffer.getvalue())
    url = f"{get_settings().serve_url}/{SERVICE}/batch"

    def endpoint_rates() -> dict[str, float]:
        """Rows/s of one pass over the bodies per kind of answer, after a pass that warms every
        replica up (a fresh one's first tables pay for its memory's first touch)."""
        with httpx.Client(timeout=600) as client, ThreadPoolExecutor(BATCH_CLIENTS) as pool:

            def passed(answer: str) -> float:
                headers = {"content-type": PARQUET_TYPE, "accept": BATCH_ANSWERS[answer]}
                start = time.perf_counter()
                for response in pool.map(
                    lambda body: client.post(url, content=body, headers=headers), bodies
                ):
                    response.raise_for_status()
                return rows / (time.perf_counter() - start)

            passed("json")
            return {answer: passed(answer) for answer in BATCH_ANSWERS}

    held = spec.serving.batch.max_replicas
    counts = [*sorted({1, os.cpu_count() or 1} - {held}), held]  # the spec's count last
    endpoint: dict[str, dict[str, list[float]]] = {
        answer: {str(count): [] for count in counts} for answer in BATCH_ANSWERS
    }
    try:
        for _ in range(ab.ROUNDS):
            for count in counts:
                with replicas_ab.replicas_deployed(count, BATCH):
                    for answer, rate in endpoint_rates().items():
                        endpoint[answer][str(count)].append(rate)
    finally:
        deploy(manifest_path())
    return {
        "in_process": statistics.median(in_process),
        "in_process_rounds": in_process,
        "endpoint": statistics.median(endpoint["parquet"][str(counts[-1])]),
        "endpoint_json": statistics.median(endpoint["json"][str(counts[-1])]),
        "endpoint_replicas": endpoint["parquet"],
        "batch_score": batch_score_rows / statistics.median(batch_score_s["actors"]["large"]),
        "batch_score_rows": batch_score_rows,
        "batch_score_s": batch_score_s,
    }


def batch_score_lines(b: dict[str, Any]) -> list[str]:
    """What the command's time is made of, and the same job done by Ray Data beside it."""
    times = b.get("batch_score_s")
    if not times:
        return []
    rows = b["batch_score_rows"]

    def side(key: str) -> tuple[float, float, float]:
        """Whole command's rows/s, fixed start (s), rows/s beyond it: medians of the rounds."""
        large, small = (statistics.median(times[key][name]) for name in ("large", "small"))
        return rows / large, small, (rows - BATCH_SCORE_SMALL_ROWS) / max(large - small, 1e-9)

    (ours, fixed, after), (peer, peer_fixed, peer_after) = side("actors"), side("ray_data")
    return [
        "",
        f"`mlops batch-score` scored {rows:,} rows ({BATCH_SCORE_COPIES} Parquet files) with "
        f"{SCORERS} scorer actors, medians of {len(times['actors']['large'])} rounds that "
        "alternate it with the same job done by Ray Data (`benchmarks/ray_data_batch.py`: "
        "`read_parquet`, `map_batches` over as many actors calling the same scoring code, "
        "`write_parquet`). Each pays a fixed start whatever the input (the driver, its "
        f"workers starting and loading the model: the same command on "
        f"{BATCH_SCORE_SMALL_ROWS:,} rows), then scores at a rate:",
        "",
        "| job | whole command, rows/s | fixed start | rows/s beyond it |",
        "| --- | --- | --- | --- |",
        f"| `mlops batch-score` | {ours:,.0f} | {fixed:.1f} s | {after:,.0f} |",
        f"| Ray Data | {peer:,.0f} | {peer_fixed:.1f} s | {peer_after:,.0f} |",
        "",
        f"`mlops batch-score` runs the job {ours / peer:.2f}x as fast as Ray Data; beyond its "
        f"start its {SCORERS} scorers score at {after / b['in_process']:.0%} of in-process "
        "(one call on one core, the median of one measurement per round), reading, checking "
        "and writing included.",
    ]


def batch_replicas_lines(rates: dict[str, list[float]] | None) -> list[str]:
    """/batch per held count of Batch replicas (absent from results of older runs)."""
    if not rates:
        return []

    def side(count: str) -> str:
        runs = rates[count]
        return (
            f"{replicas_ab.describe(int(count))}: "
            f"{statistics.median(runs):,.0f} rows/s ({min(runs):,.0f}-{max(runs):,.0f})"
        )

    *others, spec = rates
    ratios = ", ".join(
        f"{statistics.median(rates[spec]) / statistics.median(rates[o]):.2f}x {o}" for o in others
    )
    return [
        "",
        f"`/batch` above is the median of {len(rates[spec])} rounds with the Batch deployment "
        f"held at the spec's `max_replicas` ({spec}); the rounds alternate held counts, each "
        "after a pass over the tables that warms its replicas up: "
        f"{'; '.join(side(count) for count in rates)} ({spec} against {ratios}). One replica "
        "runs two tables at a time in Ray Serve's thread pool: one's XGBoost call (which "
        "releases the GIL) overlaps the other's parsing, checks, answer and log rows.",
    ]


def promote_wall_time(repo: Path, env: dict[str, str]) -> tuple[str, float]:
    """Register one more version, then time `mlops promote --direct` until the endpoint serves
    it (without `--direct` the service's rollout policy would only start a shadow, and every
    figure measured after it would carry one)."""
    mlops = str(BIN / "mlops")
    subprocess.run(
        [mlops, "stage", "register", SERVICE], cwd=repo, env=env, check=True, capture_output=True
    )
    version = json.loads((repo / "models" / SERVICE / "registration.json").read_text())["version"]
    start = time.perf_counter()
    subprocess.run(
        [mlops, "promote", f"{SERVICE}@v{version}", "--direct"],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
    )
    return version, time.perf_counter() - start


def run(
    workdir: Path, duration_s: int, rows: int, monitor_rows: int, sections: Sequence[str] = SECTIONS
) -> dict[str, Any]:
    """Set up (pipeline, promotions: always measured), then measure `sections`."""
    from benchmarks import bench_monitor, bench_pipeline
    from mlops import stack
    from mlops.sandbox import copy_repo, free_port
    from services.datagen import generate
    from services.schema import frame_to_records
    from services.settings import get_settings
    from services.spec import load_spec
    from serving.promote import promote

    repo = copy_repo(workdir / "repo")
    home = workdir / "home"
    saved = dict(os.environ)
    os.environ |= {
        "MLOPS_HOME": str(home),
        "MLOPS_REPO_ROOT": str(repo),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
    }
    try:
        settings = get_settings()
        stack.mlflow_up(settings, timeout_s=120)
        stack.ray_up(settings, timeout_s=180)
        results: dict[str, Any] = {"cores": os.cpu_count()}
        log.info("pipeline: dvc repro cold and warm")
        results["pipeline"] = asdict(bench_pipeline.run(repo, settings.tracking_uri, home))
        for service in ("fraud-detection", "demand-forecast"):
            promote(f"{service}@v1")
        env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        version, results["promote_s"] = promote_wall_time(repo, dict(env))
        spec = load_spec(SERVICE)
        body = json.dumps(
            {RECORDS: frame_to_records(spec, generate(spec, 1, 3)[spec.feature_names])}
        )
        predict_url = f"{settings.serve_url}/{SERVICE}/predict"
        health_url = f"{settings.serve_url}/{SERVICE}/health"
        load = ab.Load(predict_url, body, duration_s, WARMUP_S)
        if "realtime" in sections:
            log.info("real-time load")
            booster = repo / "models" / SERVICE / "model.ubj"
            results["realtime"] = realtime(body, booster, version, duration_s)
            results["breakdown"] = breakdown.stage_costs_us(SERVICE, version, body)
        if "profile" in sections:
            log.info("the Realtime replicas' CPU, sampled under load")
            results["profile"] = replica_profile.profile(load, SERVICE)
        if "runtime" in sections:
            log.info("replicas' runtime: %s, alternating", ", ".join(runtime_ab.RUNTIMES))
            results["runtime"] = {
                key: [asdict(r) for r in runs]
                for key, runs in runtime_ab.measure_cost(load, health_url).items()
            }
        if "merging" in sections:
            log.info("request merging: %s, alternating", ", ".join(merging_ab.sides()))
            results["merging"] = {
                key: [asdict(r) for r in runs]
                for key, runs in merging_ab.measure_cost(load, health_url).items()
            }
        if "replicas" in sections:
            log.info(
                "Realtime replicas: %s, alternating", ", ".join(map(str, replicas_ab.counts()))
            )
            results["replicas"] = {
                key: [asdict(r) for r in runs]
                for key, runs in replicas_ab.measure_cost(load).items()
            }
        if "telemetry" in sections:
            log.info("request telemetry: off and on, alternating")
            cost = telemetry_ab.measure_cost(predict_url, body, duration_s, WARMUP_S)
            results["telemetry"] = {
                side: [asdict(r) for r in getattr(cost, side)] for side in ("on", "off")
            }
        if "rollout" in sections:
            log.info("rollout traffic: none, shadow and canary, alternating")
            stable, candidate = rollout_ab.versions()
            results["rollout"] = asdict(rollout_ab.measure_cost(stable, candidate, load))
        if "durability" in sections:
            log.info("inference log durability: %s, alternating", ", ".join(durability_ab.LEVELS))
            results["durability"] = {
                level: [asdict(r) for r in runs]
                for level, runs in durability_ab.measure_cost(load).items()
            }
            row = durability_ab.logged_row(json.loads(body)[RECORDS][0])
            results["durability_append_us"] = durability_ab.append_cost_us(row)
        if "haproxy" in sections:
            log.info("HAProxy threads: %s, alternating", haproxy_ab.sides())
            results["haproxy"] = {
                key: [asdict(r) for r in runs]
                for key, runs in haproxy_ab.measure_cost(load).items()
            }
        if "batch" in sections:
            log.info("batch: %d rows", rows)
            results["batch"] = batch(rows, workdir, version)
        if "monitor" in sections:
            log.info("monitor: %d rows", monitor_rows)
            results["monitor"] = asdict(
                bench_monitor.bench(monitor_rows, workdir / "monitor", settings.tracking_uri)
            )
        return results
    finally:
        stack.down()
        os.environ.clear()
        os.environ.update(saved)


DEFAULTS = """## Why the serving defaults are what they are

- **Ingress: Ray Serve's HAProxy ingress with `RAY_SERVE_THROUGHPUT_OPTIMIZED=1`** (set by
  `mlops stack up`). The Python HTTP proxy is a second Python hop per request; HAProxy
  forwards straight to the replica's own HTTP server, and the throughput mode runs user code on
  the replica's event loop (no thread hop) and talks gRPC between deployments (the `/batch`
  hand-over). HAProxy runs one thread per core (Ray Serve's default is 4 whatever the cores:
  the HAProxy A/B below).
- **Replicas at nice 0, no access line per real-time request, no HAProxy ingress metrics**:
  Ray's workers start at nice 15 (any busy nice-0 process preempts them), its access line is a
  large share of a replica's CPU per request (the inference log records every row anyway), and
  HAProxy's per-request metrics log is parsed in Python (A/B table in docs/SERVING.md).
- **Request merging `{max_requests: 64, wait_ms: 0}`** (each spec's `serving.request_merging`,
  applied by serving/merging.py): requests already queued on the replica's event loop are scored
  in one model call; none waits for company, since any wait adds straight to single-connection
  latency (the merging A/B below).
- **Calls of up to 32 rows on ONNX Runtime** (`MLOPS_SERVING_RUNTIME=onnx`), on the version's
  conversion that registration checked against XGBoost on every test row; larger calls on
  XGBoost's `inplace_predict` (the runtime A/B below, MODEL_LIMIT.md for the crossover).
- **`max_ongoing_requests: 32`, 1-2 real-time replicas per service, `target_ongoing_requests:
  2`**: one replica per core at full load (each replica is one Python thread plus XGBoost with
  `nthread=1`; more threads than cores only adds contention: the replicas A/B below). Serve
  counts only the requests a replica's event loop has taken in: a busy replica leaves the rest
  in its socket, so one replica at full load reports about 5 of 16 connections' requests, and
  a target of 8 kept it alone; at 2 the second replica starts once requests queue (the
  replicas each round ran are under the real-time table).
- **Validation of the raw bytes by pydantic-core** (no JSON-to-dict-to-model double pass),
  **orjson** responses, request ids built from one UUID per request.
- **`/batch`**: a separate deployment (scales to zero) so large tables never queue behind
  real-time requests, one replica (`max_replicas: 1`; the batch figures above compare it with
  one per core); frames are checked column-wise (vectorized) and only go through the per-row
  model when something is wrong, to name the row; results cross the deployment handle as
  encoded JSON bytes; `score` runs in Ray Serve's thread pool, so with two requests in flight
  one's XGBoost call (which releases the GIL) overlaps the other's parsing and encoding; the
  logged rows' request columns are repeated by Arrow and their write-ahead frame is
  LZ4-compressed.
"""


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def report(results: dict[str, Any]) -> str:
    """RESULTS.md: absolute figures, ratios against the alternatives, and the targets."""
    realtime = results["realtime"]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`python -m benchmarks.bench_serving`) on a machine with "
        f"{results['cores']} cores. All servers score the same `fraud-detection` booster, each "
        f"with the same CPU budget: {WORKERS} processes or replicas (one per core), one thread "
        "per model call (XGBoost `nthread=1`; this project scores single records with ONNX "
        "Runtime on one thread, on the booster's conversion checked at registration, unless a "
        "row says otherwise), no access log, at the same priority (nice 0), with wrk on the "
        "same machine. Peers run from pinned environments of their own under "
        "`benchmarks/peers/`.",
        "",
        *realtime_bench.report_lines(realtime),
        *breakdown.report_lines(results.get("breakdown"), realtime),
        *replica_profile.report_lines(results.get("profile")),
        "",
        "## Batch (rows/s)",
        "",
        "| path | rows/s | vs in-process | target |",
        "| --- | --- | --- | --- |",
    ]
    b = results["batch"]
    for key, label, target in (
        ("in_process", "in-process `inplace_predict` (nthread=1)", None),
        (
            "endpoint",
            "`/batch` (Parquet bodies and answers of max_batch_rows)",
            BATCH_ENDPOINT_SHARE,
        ),
        ("endpoint_json", "`/batch` (the same bodies, JSON answers)", None),
        ("batch_score", "`mlops batch-score` (whole command)", BATCH_SCORE_SHARE),
    ):
        if key not in b:  # results of older runs
            continue
        share = b[key] / b["in_process"]
        verdict = (
            "-" if target is None else f">= {target:.0%}: {'met' if share >= target else 'missed'}"
        )
        lines.append(f"| {label} | {b[key]:,.0f} | {share:.0%} | {verdict} |")
    if "endpoint_json" in b:
        lines += [
            "",
            "Both `/batch` rows send the same Parquet bodies, two at a time, and the replica "
            "does the same work for each (reads, checks every value against the spec, predicts, "
            "appends every row with its id to the inference log); the first asks for its answer "
            "as a Parquet table (`Accept: application/vnd.apache.parquet`), the second as JSON "
            f"(an object per row): {b['endpoint'] / b['endpoint_json']:.2f}x the rows/s.",
        ]
    lines += batch_replicas_lines(b.get("endpoint_replicas"))
    lines += batch_score_lines(b)
    lines += realtime_bench.bound_lines(realtime, results["cores"])
    lines += runtime_ab.report_lines(results.get("runtime"))
    lines += merging_ab.report_lines(results.get("merging"))
    lines += replicas_ab.report_lines(results.get("replicas"))
    lines += telemetry_ab.report_lines(results.get("telemetry"))
    lines += rollout_ab.report_lines(results.get("rollout"))
    lines += durability_ab.report_lines(
        results.get("durability"), results.get("durability_append_us")
    )
    lines += haproxy_ab.report_lines(results.get("haproxy"), results["cores"])
    p, m = results["pipeline"], results["monitor"]
    lines += [
        "",
        "## Pipeline and operations",
        "",
        "| what | figure | target |",
        "| --- | --- | --- |",
        f"| `dvc repro` cold (data init + repro) | {p['data_init_s'] + p['repro_cold_s']:.1f} s "
        "| <= 60 s |",
        f"| `dvc repro` warm (no-op: {p['warm_was_noop']}) | {p['repro_warm_s']:.1f} s | <= 5 s |",
        f"| `mlops promote` (command start to endpoint serving) | {results['promote_s']:.1f} s "
        "| <= 30 s |",
        f"| monitor, {m['rows']:,} rows | {m['monitor_s']:.1f} s, peak RSS "
        f"{m['peak_rss_mib']:.0f} MiB | <= 30 s, <= 2 GiB |",
        "",
        DEFAULTS,
    ]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Latency (p50 and p99) against throughput for each server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chart, axis = plt.subplots(figsize=(7, 4.5))
    names = dict.fromkeys(r["name"] for r in results["realtime"])
    for name in names:
        points = sorted(
            (r for r in results["realtime"] if r["name"] == name), key=lambda r: r["connections"]
        )
        rates = [realtime_bench.figure(r, "requests_per_s") for r in points]
        for field, style in (("p50_ms", "o-"), ("p99_ms", "x--")):
            latency = [realtime_bench.figure(r, field) for r in points]
            axis.plot(rates, latency, style, label=f"{name} {field[:3]}")
    axis.set_xlabel("requests/s (1 and 16 connections; medians of the rounds)")
    axis.set_ylabel("latency (ms)")
    axis.set_yscale("log")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    chart.tight_layout()
    chart.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rows", type=int, default=1_000_000, help="batch rows")
    parser.add_argument("--monitor-rows", type=int, default=100_000)
    parser.add_argument("--output", type=Path, default=HERE, help="folder for RESULTS.md")
    parser.add_argument(
        "--sections",
        type=lambda text: text.split(","),
        default=list(SECTIONS),
        help=f"comma-separated, of {','.join(SECTIONS)}: measure these, keep the others' "
        "figures from the output folder's results.json",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: write RESULTS.md and the plot again from results.json",
    )
    args = parser.parse_args(argv)
    if unknown := set(args.sections) - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(unknown))} (of {', '.join(SECTIONS)})")
    stored = args.output / "results.json"
    everything = set(args.sections) == set(SECTIONS) and not args.report_only
    results = {} if everything else json.loads(stored.read_text())
    if not args.report_only:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        logging.getLogger("httpx").setLevel(logging.WARNING)
        with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
            results |= run(Path(tmp), args.duration, args.rows, args.monitor_rows, args.sections)
    args.output.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(results, indent=2) + "\n")
    (args.output / "RESULTS.md").write_text(report(results) + "\n\n![latency](latency.png)\n")
    plot(results, args.output / "latency.png")
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
