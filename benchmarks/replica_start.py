"""Replica start-up: the imports and model loading a Ray Serve replica does before its first
answer, each case in fresh Python processes (`python -m benchmarks.replica_start`).

- baseline: the floor, a bare process importing only the packages serving needs (NumPy, orjson,
  pydantic, FastAPI, PyYAML, PyArrow, fsspec, XGBoost without scikit-learn as serving imports it,
  ONNX Runtime, Ray Serve) and loading the booster file and its ONNX conversion;
- replica: `import serving.app` and a version loaded as a replica loads it (`load_version`,
  from the node's model cache: a hit, as for a replica that replaces a killed one);
- scorer: the batch-score actor's module and its model (Ray's own worker start aside);
- pyfunc: `import serving.app` and the version loaded as MLflow's clients load it (the pyfunc
  unpickled, then unwrapped): what replicas did before the model cache, the registry's round
  trips aside;
- replica, scikit-learn imported: the replica case in a process that imported scikit-learn
  first, so XGBoost comes with its scikit-learn estimators: what services.lean_xgboost saves
  (scikit-learn's import precedes the timed imports: compare the process columns).

The model is a 200-tree booster of fraud-detection trained here on generated rows and its ONNX
conversion, saved as the registered pyfunc is and put into a temporary model cache; MLflow
points at a port where nothing listens, so a case that asked the registry would fail. Times are
seconds, median (min-max) of the rounds; `process` is the whole interpreter, from its start to
its exit; the CPU columns (user + system) change less than the wall clock on a busy machine.
Every process reads the bytecode `make install` compiled into the environment, as replicas do.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.scratch import scratch_dir

RESULTS = Path(__file__).resolve().parent / "REPLICA_START.md"
MAX_RATIO = 1.5  # a replica's own start-up: at most 1.5x the bare floor's
SERVICE = "fraud-detection"
VERSION = "1"
TREES = 200
ROUNDS = 3
PARTS = ("process", "process CPU", "imports", "imports CPU", "load")
BARE_IMPORTS = """
import fastapi, fsspec, numpy, orjson, pyarrow, pydantic, starlette, yaml
import onnxruntime, xgboost
from ray import serve
"""
NO_SKLEARN = 'sys.modules["sklearn"] = None  # XGBoost imports it only when it is importable\n'
SKLEARN_FIRST = "import sklearn  # then services.lean_xgboost imports XGBoost as usual\n"
# A case's process: its imports, then its loading, each timed; prints the times as JSON
PROCESS = """
import json, sys, time
{prelude}started, started_cpu = time.perf_counter(), time.process_time()
{imports}
imported, imported_cpu = time.perf_counter(), time.process_time()
{load}
loaded = time.perf_counter()
times = {{"imports": imported - started, "imports CPU": imported_cpu - started_cpu}}
print(json.dumps(times | {{"load": loaded - imported}}))
"""


@dataclass(frozen=True)
class Case:
    """What one process of a case runs: its imports, then the loading of its model."""

    imports: str
    load: str
    prelude: str = ""

    def script(self) -> str:
        return PROCESS.format(prelude=self.prelude, imports=self.imports, load=self.load)


def cases(booster: Path, onnx: Path, pyfunc: Path) -> dict[str, Case]:
    """The measured cases, by name (the model's files in `booster`, `onnx` and `pyfunc`)."""
    replica = Case(
        "import serving.app",
        f"from serving.model_slot import load_version\nload_version({SERVICE!r}, {VERSION!r}, 100)",
    )
    return {
        "baseline": Case(
            BARE_IMPORTS,
            f"booster = xgboost.Booster(model_file={str(booster)!r})\n"
            'booster.set_param({"nthread": 1})\n'
            f"onnxruntime.InferenceSession({str(onnx)!r})",
            NO_SKLEARN,
        ),
        "replica": replica,
        "scorer": Case(
            "from serving.scorer import Scorer", f"Scorer({SERVICE!r}, {VERSION!r}).ready()"
        ),
        "pyfunc": Case(
            "import serving.app\nimport mlflow.pyfunc",
            f"mlflow.pyfunc.load_model({str(pyfunc)!r}).unwrap_python_model()",
        ),
        "replica, scikit-learn imported": Case(replica.imports, replica.load, SKLEARN_FIRST),
    }


def model_files(workdir: Path) -> tuple[Path, Path, Path]:
    """The benchmark's version: its booster file, its ONNX file, its pyfunc saved in `workdir`
    and put into the model cache of `workdir` (the environment of this process points there)."""
    import mlflow.pyfunc
    import xgboost as xgb

    from services.datagen import generate
    from services.model import ServiceModel
    from services.model_cache import cached_artifacts
    from services.onnx_scoring import convert
    from services.registry_keys import BOOSTER_ARTIFACT, ONNX_ARTIFACT, SPEC_ARTIFACT
    from services.spec import SPEC_FILE, load_spec
    from training.train import frame_matrix

    spec = load_spec(SERVICE)
    matrix = frame_matrix(spec, generate(spec, 5_000, seed=3))
    booster, onnx = workdir / "model.ubj", workdir / "model.onnx"
    trained = xgb.train(spec.model.params, matrix, num_boost_round=TREES)
    trained.save_model(booster)
    onnx.write_bytes(convert(trained))
    files = {BOOSTER_ARTIFACT: booster, SPEC_ARTIFACT: spec.folder / SPEC_FILE, ONNX_ARTIFACT: onnx}
    pyfunc = workdir / "pyfunc"
    mlflow.pyfunc.save_model(
        pyfunc,
        python_model=ServiceModel(),
        artifacts={name: str(path) for name, path in files.items()},
        pip_requirements=[],
    )
    stored = {name: pyfunc / "artifacts" / path.name for name, path in files.items()}

    def copy(service: str, version: str, folder: Path) -> dict[str, str]:
        for path in stored.values():
            (folder / path.name).write_bytes(path.read_bytes())
        return {name: path.name for name, path in stored.items()}

    cached_artifacts(SERVICE, VERSION, copy)
    return booster, onnx, pyfunc


def run_case(case: Case, root: Path) -> dict[str, float]:
    """One fresh process of `case`, run in the checkout `root`: its times by part."""
    started, cpu = time.perf_counter(), _children_cpu()
    result = subprocess.run(
        [sys.executable, "-c", case.script()],
        cwd=root,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed, cpu = time.perf_counter() - started, _children_cpu() - cpu
    if result.returncode != 0:
        raise RuntimeError(f"the case failed:\n{case.script()}\n{result.stderr[-3000:]}")
    return {"process": elapsed, "process CPU": cpu, **json.loads(result.stdout.splitlines()[-1])}


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's children that have ended."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    names: Sequence[str] | None = None,
    rounds: int = ROUNDS,
    root: Path | None = None,
    keep: bool = False,
) -> dict[str, dict[str, dict[str, float]]]:
    """Per case (all, or `names`) and part: median, min and max seconds of `rounds` rounds
    (each round runs every case once, so a drift of the machine touches all alike); `root`:
    the checkout whose code the processes import (default: this one)."""
    from services.settings import MODEL_CACHE_DIR_ENV, PACKAGE_REPO, TRACKING_URI_ENV

    saved = dict(os.environ)
    try:
        with scratch_dir("replica-start-", keep) as workdir:
            os.environ[MODEL_CACHE_DIR_ENV] = str(workdir / "model-cache")
            os.environ[TRACKING_URI_ENV] = "http://127.0.0.1:9"  # nothing listens there
            chosen = cases(*model_files(workdir))
            chosen = {name: chosen[name] for name in names or chosen}
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in chosen}
            for _ in range(rounds):
                for name, case in chosen.items():
                    runs[name].append(run_case(case, root or PACKAGE_REPO))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {name: summary(times) for name, times in runs.items()}


def summary(times: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        part: {
            "median": statistics.median(t[part] for t in times),
            "min": min(t[part] for t in times),
            "max": max(t[part] for t in times),
        }
        for part in PARTS
    }


def table(figures: dict[str, dict[str, dict[str, float]]]) -> str:
    """A Markdown table of `measure`'s figures."""
    lines = ["| case | " + " | ".join(PARTS) + " |", "|---" * (len(PARTS) + 1) + "|"]
    for name, parts in figures.items():
        cells = [
            f"{p['median']:.2f} ({p['min']:.2f}-{p['max']:.2f})"
            for p in (parts[part] for part in PARTS)
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(figures: dict[str, dict[str, dict[str, float]]]) -> str:
    """REPLICA_START.md: what is measured, the table, and the replica against the floor."""
    intro = (__doc__ or "").split("\n\n", 1)[1].strip()
    lines = [
        "# Replica start-up",
        "",
        f"Written by `make bench-replica-start` (`python -m benchmarks.replica_start`) on a "
        f"machine with {os.cpu_count()} cores. A replica's own part of its start: the "
        "imports and model loading before its first answer, in fresh processes.",
        "",
        intro,
        "",
        table(figures),
    ]
    if {"baseline", "replica"} <= figures.keys():
        lines.append("")
        for part in ("process", "process CPU"):
            ratio = figures["replica"][part]["median"] / figures["baseline"][part]["median"]
            verdict = "met" if ratio <= MAX_RATIO else "missed"
            lines.append(
                f"- replica against the bare floor, {part}: {ratio:.2f}x (target <= "
                f"{MAX_RATIO}x: {verdict})."
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--case", action="append", help="only this case (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    text = markdown(measure(args.case, args.rounds, keep=args.keep))
    if not args.case:  # a subset of the cases is a look, not the document
        RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
