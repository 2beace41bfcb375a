"""`python -m benchmarks.bench_model_limit`: the model's own limit, per runtime, side by side.

Trains fraud-detection's booster from the default data in a scratch copy of the repository
(the pipeline's `prepare` and `train`), encodes its test split as the replicas encode records,
then runs benchmarks/model_limit.py in the runtimes' own environment
(benchmarks/runtimes/.venv, created from benchmarks/runtimes/requirements.txt with uv). The
table goes to benchmarks/MODEL_LIMIT.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.model_limit import BATCHES, ONNX, XGBOOST
from benchmarks.pinned_env import pinned_python
from benchmarks.scratch import scratch_dir
from services.onnx_scoring import SMALL_CALL_ROWS, TOLERANCE

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
RUNTIMES = HERE / "runtimes"
RESULTS = HERE / "MODEL_LIMIT.md"
SERVICE = "fraud-detection"
SIZES = tuple(BATCHES)  # rows per call


def runtimes_python() -> Path:
    """The runtimes' interpreter, its environment created or brought to the pinned set."""
    return pinned_python(RUNTIMES)


def bare_onnx_command(booster: Path, port: int, workers: int) -> tuple[list[str], dict[str, str]]:
    """uvicorn serving benchmarks/bare_onnx_server.py (fraud-detection's `booster` on ONNX
    Runtime) on 127.0.0.1:`port` with `workers` processes from the runtimes' environment
    (created if missing), and the environment it needs: the repository on PYTHONPATH."""
    from benchmarks.bare_app import BOOSTER_ENV, SERVICE_ENV

    command = [
        str(runtimes_python()),
        *("-m", "uvicorn", "benchmarks.bare_onnx_server:app", "--host", "127.0.0.1"),
        *("--port", str(port), "--workers", str(workers), "--log-level", "warning"),
    ]
    env = {"PYTHONPATH": str(HERE.parent), BOOSTER_ENV: str(booster), SERVICE_ENV: SERVICE}
    return command, env


def booster_and_rows(workdir: Path) -> tuple[Path, Path, int]:
    """The trained booster file, the encoded test split (.npy) and its tree count."""
    from mlops.sandbox import copy_repo

    repo = copy_repo(workdir / "repo")
    saved = dict(os.environ)
    os.environ |= {"MLOPS_REPO_ROOT": str(repo), "MLOPS_HOME": str(workdir / "home")}
    try:
        from services.encoding import FeatureEncoder
        from services.spec import load_spec
        from training.data import ensure_snapshot, load_split, prepare
        from training.train import train

        spec = load_spec(SERVICE)
        ensure_snapshot(spec)
        prepare(spec)
        trees = train(spec)["trees"]
        rows = FeatureEncoder(spec).encode_frame(load_split(spec, "test"))
        np.save(workdir / "rows.npy", np.asarray(rows, dtype=np.float32))
        return repo / "models" / SERVICE / "model.ubj", workdir / "rows.npy", trees
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _cell(rounds: list[float]) -> str:
    return f"{statistics.median(rounds):.1f} ({min(rounds):.1f}-{max(rounds):.1f})"


def markdown(results: list[dict[str, Any]], trees: int, rows: int) -> str:
    base = {size: statistics.median(results[0][f"{size}_rows_us"]) for size in SIZES}
    lines = [
        "# The model's own limit",
        "",
        "Written by `python -m benchmarks.bench_model_limit` on a machine with "
        f"{os.cpu_count()} cores: fraud-detection's booster ({trees} trees, trained from the "
        "default data) predicting its encoded test split in-process, one thread, per runtime. "
        "Latency per call in µs: median of 3 rounds (min-max of the rounds' medians); "
        "x = speed-up over XGBoost's `inplace_predict`. "
        f"Largest difference from XGBoost's predictions over all {rows:,} test rows.",
        "",
        "| runtime | "
        + " | ".join(f"{size} row{'s' * (size > 1)} µs | x" for size in SIZES)
        + f" | max difference | within {TOLERANCE:.0e} |",
        "|" + " --- |" * (2 * len(SIZES) + 3),
    ]
    for result in results:
        if "error" in result:
            dashes = " - |" * (2 * len(SIZES))
            lines.append(f"| {result['runtime']} |{dashes} {result['error']} | no |")
            continue
        cells = []
        for size in SIZES:
            rounds = result[f"{size}_rows_us"]
            cells += [_cell(rounds), f"{base[size] / statistics.median(rounds):.1f}"]
        difference = result["max_abs_difference"]
        same = "yes" if difference <= TOLERANCE else "no"
        lines.append(f"| {result['runtime']} | {' | '.join(cells)} | {difference:.1e} | {same} |")
    return "\n".join(lines + crossover(results)) + "\n"


def crossover(results: list[dict[str, Any]]) -> list[str]:
    """Where ONNX Runtime stops being faster than XGBoost, against the replicas' threshold."""
    by_name = {r["runtime"]: r for r in results if "error" not in r}
    if XGBOOST not in by_name or ONNX not in by_name:
        return []
    median = {
        (name, size): statistics.median(by_name[name][f"{size}_rows_us"])
        for name in (XGBOOST, ONNX)
        for size in SIZES
    }
    faster = [size for size in SIZES if median[ONNX, size] < median[XGBOOST, size]]
    return [
        "",
        f"ONNX Runtime is faster at {', '.join(map(str, faster)) or 'no size'} rows per call "
        f"here; replicas score calls of up to {SMALL_CALL_ROWS} rows with it (where the "
        "version's conversion passed its check) and larger ones with XGBoost "
        "(services/onnx_scoring.py).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    python = runtimes_python()
    with scratch_dir("bench-model-limit-", args.keep) as workdir:
        booster, rows, trees = booster_and_rows(workdir)
        out = workdir / "model_limit.json"
        subprocess.run(
            [str(python), str(HERE / "model_limit.py"), str(booster), str(rows), str(out)],
            check=True,
        )
        results = json.loads(out.read_text())
        count = len(np.load(rows))
    RESULTS.write_text(markdown(results, trees, count))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
