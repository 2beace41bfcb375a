"""Time and peak memory of `mlops monitor` on N logged rows of fraud-detection (default 100,000).

Setup (not timed): an inference log of N labelled rows (10 Parquet parts, as serving flushes
them) predicted by the production model. By default a private MLflow server is started on a
free port with a freshly trained fraud-detection version in production; `--tracking-uri`
uses an existing server whose fraud-detection has a `production` version instead.

Measured: the monitor runs in a fresh child process (spawn), as the scheduled job would.
- monitor wall time: the `monitor_service` call (window read, reference download, Evidently
  drift, live metrics, HTML report, MLflow run), imports excluded (a tiny Evidently report
  runs first, since Evidently imports most of its modules on the first report);
- monitor CPU time: user+sys of that call (all threads), less sensitive to a busy machine;
- child total: imports + warm-up + the call, what a cold `mlops monitor` process pays;
- peak memory: the child's peak resident set size (getrusage ru_maxrss), imports included.

    python -m benchmarks.bench_monitor [--rows N] [--tracking-uri URI] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.scratch import scratch_dir

log = logging.getLogger(__name__)
SERVICE = "fraud-detection"
PARTS = 10


@dataclass(frozen=True)
class MonitorBench:
    rows: int
    monitor_s: float
    monitor_cpu_s: float
    child_total_s: float
    peak_rss_mib: float
    decision: str
    feature_drift_share: float | None


def _child(env: dict[str, str], queue: Any) -> None:
    """Run one monitor check in this (fresh) process and report time and peak RSS."""
    os.environ.update(env)
    started = time.perf_counter()
    from monitoring.monitor import monitor_service

    _warm_up()
    start, cpu_start = time.perf_counter(), time.process_time()
    result = monitor_service(SERVICE)
    monitor_s, monitor_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    queue.put(
        {
            "monitor_s": monitor_s,
            "monitor_cpu_s": monitor_cpu_s,
            "child_total_s": time.perf_counter() - started,
            "peak_rss_mib": peak_kib / 1024,
            "decision": result.action,
            "feature_drift_share": result.measurements.feature_drift_share,
        }
    )


def _warm_up() -> None:
    """Evidently imports most of its modules on the first report: run a tiny one first."""
    from monitoring.drift import measure_drift
    from services.datagen import generate
    from services.inference_log import PROBABILITY
    from services.spec import load_spec

    spec = load_spec(SERVICE)
    sample = generate(spec, 200, seed=0).assign(**{PROBABILITY: 0.5})
    measure_drift(spec, sample, sample)


def measure(rows: int, env: dict[str, str]) -> MonitorBench:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child, args=(env, queue))
    child.start()
    report = queue.get(timeout=1_800)
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"monitor child exited with {child.exitcode}")
    return MonitorBench(rows=rows, **report)


def _train_and_promote(tmp: Path) -> None:
    """A fraud-detection version trained here (XGBoost on generated data) in production."""
    import mlflow
    import xgboost as xgb

    from monitoring.production import mark_promoted
    from services.datagen import generate
    from services.model import ServiceModel, signature_from_spec
    from services.registry import PRODUCTION, connect
    from services.registry_keys import (
        BOOSTER_ARTIFACT,
        MODEL_ARTIFACT,
        REFERENCE_ARTIFACT,
        SPEC_ARTIFACT,
        metric_tag,
    )
    from services.scoring import ScoringModel
    from services.spec import SPEC_FILE, load_spec
    from training.train import frame_matrix

    spec = load_spec(SERVICE)
    client = connect()
    data = generate(spec, 20_000, seed=1)
    booster = xgb.train(spec.model.params, frame_matrix(spec, data), num_boost_round=100)
    booster.save_model(tmp / "model.ubj")
    reference = data.sample(5_000, random_state=0).reset_index(drop=True)
    outputs = ScoringModel(spec, booster).predict_frame(reference)
    reference_path = tmp / Path(REFERENCE_ARTIFACT).name
    reference.join(outputs).to_parquet(reference_path)
    mlflow.set_experiment(SERVICE)
    with mlflow.start_run(run_name="bench-monitor"):
        mlflow.log_artifact(str(reference_path), str(Path(REFERENCE_ARTIFACT).parent))
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=ServiceModel(),
            artifacts={
                BOOSTER_ARTIFACT: str(tmp / "model.ubj"),
                SPEC_ARTIFACT: str(spec.folder / SPEC_FILE),
            },
            signature=signature_from_spec(spec),
            pip_requirements=["mlflow", "xgboost"],
            registered_model_name=SERVICE,
        )
    version = str(info.registered_model_version)
    client.set_model_version_tag(SERVICE, version, metric_tag(spec.evaluation.metric), "0.9")
    client.set_registered_model_alias(SERVICE, PRODUCTION, version)
    mark_promoted(client, SERVICE, version)


def write_log(rows: int, log_uri: str) -> float:
    """N labelled rows predicted by the production version; returns the seconds it took."""
    import mlflow

    from monitoring.backfill import log_traffic
    from services.registry import PRODUCTION, connect
    from services.spec import load_spec

    start = time.perf_counter()
    spec = load_spec(SERVICE)
    version = connect().get_model_version_by_alias(SERVICE, PRODUCTION).version
    predict = mlflow.pyfunc.load_model(f"models:/{SERVICE}@{PRODUCTION}").predict
    per_part = -(-rows // PARTS)
    for part, start_row in enumerate(range(0, rows, per_part)):
        count = min(per_part, rows - start_row)
        log_traffic(spec, predict, log_uri, str(version), count, seed=1_000 + part)
    return time.perf_counter() - start


def bench(rows: int, workdir: Path, tracking_uri: str | None) -> MonitorBench:
    """Set up the log (and a private MLflow unless `tracking_uri`), then measure the monitor."""
    from mlops import stack
    from mlops.sandbox import copy_repo, free_port
    from services.registry import PRODUCTION, aliased_number, connect
    from services.settings import get_settings
    from serving.gitops import commit_version

    env = {
        # the monitor measures what the manifest on main names: a copy whose main names it
        "MLOPS_REPO_ROOT": str(copy_repo(workdir / "repo")),
        "MLOPS_HOME": str(workdir / "home"),
        "MLOPS_INFERENCE_LOG_URI": str(workdir / "inference-log"),
        "MLFLOW_TRACKING_URI": tracking_uri or f"http://127.0.0.1:{free_port()}",
    }
    saved = dict(os.environ)
    os.environ.update(env)
    settings = get_settings()
    started = False
    try:
        if tracking_uri is None:
            log.info("starting MLflow at %s", settings.tracking_uri)
            started = True  # stopped in `finally` even when it never became healthy
            stack.mlflow_up(settings, timeout_s=300)
            _train_and_promote(workdir)
        version = aliased_number(connect(), SERVICE, PRODUCTION)
        commit_version(SERVICE, version, f"Release {SERVICE} v{version}")
        log.info("logged %d rows in %.1f s", rows, write_log(rows, env["MLOPS_INFERENCE_LOG_URI"]))
        return measure(rows, env)
    finally:
        if started:
            stack.mlflow_down(settings)
        os.environ.clear()
        os.environ.update(saved)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="logged rows to monitor")
    parser.add_argument("--tracking-uri", help="existing MLflow server (fraud-detection in prod)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with scratch_dir("bench-monitor-", args.keep) as workdir:
        figures = bench(args.rows, workdir, args.tracking_uri)
    if args.json:
        print(json.dumps(asdict(figures)))
    else:
        print(f"rows monitored:             {figures.rows:>9,}")
        print(f"monitor wall time:          {figures.monitor_s:9.1f} s  (monitor_service call)")
        print(
            f"monitor CPU time:           {figures.monitor_cpu_s:9.1f} s  (user+sys, all threads)"
        )
        print(f"child process incl imports: {figures.child_total_s:9.1f} s")
        print(f"peak memory (RSS, child):   {figures.peak_rss_mib:9.0f} MiB  (getrusage ru_maxrss)")
        print(f"decision:                   {figures.decision:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
