"""Cold and warm `dvc repro` wall times for the default data of every service.

Cold: a fresh copy of the working tree with nothing cached (`mlops data init` + `dvc repro`).
Warm: a second `dvc repro` in the same copy, which must run no stage.
Models are registered in a real MLflow server started for the run on a free port.

Python's bytecode is what `make install` compiled into the environment: every stage's process
reads it, as on a machine where Python caches its own bytecode.

    python -m benchmarks.bench_pipeline [--keep] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.scratch import scratch_dir

log = logging.getLogger(__name__)
UP_TO_DATE = "Data and pipelines are up to date"


@dataclass(frozen=True)
class Timed:
    """Wall time and the CPU time (user + system) of the command and its children."""

    wall_s: float
    cpu_s: float
    output: str


@dataclass(frozen=True)
class PipelineTimings:
    """Wall times in seconds, and CPU seconds (independent of other load on the machine)."""

    data_init_s: float
    repro_cold_s: float
    repro_warm_s: float
    cold_cpu_s: float
    warm_cpu_s: float
    warm_was_noop: bool

    @property
    def cold_s(self) -> float:
        return self.data_init_s + self.repro_cold_s


def pipeline_env(repo: Path, tracking_uri: str, home: Path) -> dict[str, str]:
    """Environment of the pipeline commands: the copy, its state folder, the MLflow server."""
    venv_bin = str(Path(sys.executable).parent)  # dvc.yaml calls `mlops`
    return os.environ | {
        "MLOPS_REPO_ROOT": str(repo),
        "MLOPS_HOME": str(home),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], repo: Path, env: dict[str, str]) -> Timed:
    start, cpu = time.perf_counter(), _children_cpu_s()
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return Timed(elapsed, _children_cpu_s() - cpu, result.stdout + result.stderr)


def run(repo: Path, tracking_uri: str, home: Path) -> PipelineTimings:
    """Time data init + cold `dvc repro`, then a warm `dvc repro`, in the copy `repo`."""
    env = pipeline_env(repo, tracking_uri, home)
    bin_dir = Path(sys.executable).parent
    mlops, dvc = str(bin_dir / "mlops"), str(bin_dir / "dvc")
    init = _timed([mlops, "data", "init"], repo, env)
    cold = _timed([dvc, "repro"], repo, env)
    warm = _timed([dvc, "repro"], repo, env)
    noop = UP_TO_DATE in warm.output and "Running stage" not in warm.output
    return PipelineTimings(
        data_init_s=init.wall_s,
        repro_cold_s=cold.wall_s,
        repro_warm_s=warm.wall_s,
        cold_cpu_s=init.cpu_s + cold.cpu_s,
        warm_cpu_s=warm.cpu_s,
        warm_was_noop=noop,
    )


def bench(workdir: Path) -> PipelineTimings:
    """Copy the working tree into `workdir`, start MLflow there, time the pipeline, stop MLflow."""
    from mlops import stack
    from mlops.sandbox import copy_repo, free_port
    from services.settings import get_settings

    repo = copy_repo(workdir / "repo")
    home = workdir / "home"
    saved = dict(os.environ)
    os.environ |= {
        "MLOPS_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
    }
    try:
        settings = get_settings()
        log.info("starting MLflow at %s", settings.tracking_uri)
        stack.mlflow_up(settings, timeout_s=120)
        try:
            return run(repo, settings.tracking_uri, home)
        finally:
            stack.mlflow_down(settings)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument("--json", action="store_true", help="print the timings as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with scratch_dir("bench-pipeline-", args.keep) as workdir:
        timings = bench(workdir)
    if args.json:
        print(json.dumps(asdict(timings) | {"cold_s": round(timings.cold_s, 2)}))
    else:
        t = timings
        print(f"cold  (data init + dvc repro): {t.cold_s:6.1f} s   cpu {t.cold_cpu_s:6.1f} s")
        print(f"  data init                    {t.data_init_s:6.1f} s")
        print(f"  dvc repro                    {t.repro_cold_s:6.1f} s")
        print(f"warm  (second dvc repro):      {t.repro_warm_s:6.1f} s   cpu {t.warm_cpu_s:6.1f} s")
        print(f"warm run was a no-op: {'yes' if t.warm_was_noop else 'NO'}")
        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus")
    return 0 if timings.warm_was_noop else 1


if __name__ == "__main__":
    sys.exit(main())
