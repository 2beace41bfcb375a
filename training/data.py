"""Training data: the DVC-tracked snapshot of each service and the `prepare` stage."""

from __future__ import annotations

import logging
import subprocess
from collections import Counter

import pandas as pd
from sklearn.model_selection import train_test_split

from services.datagen import GENERATOR_FILE, generate, has_generator
from services.layout import ServicePaths, file_md5
from services.schema import MAX_REPORTED_PROBLEMS, Problem, validate_frame
from services.settings import tool
from services.spec import ServiceSpec
from training.params import PARAMS_FILE, ParamsError, load_params

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


class DataError(ValueError):
    """A snapshot that cannot be obtained or used; the message says what is wrong (which rows
    and columns) or what to run."""


def ensure_snapshot(spec: ServiceSpec) -> str:
    """Make the service's snapshot present; returns what was done, in words.

    A fresh clone has an empty DVC remote; a default snapshot is deterministic, so it is
    regenerated (no remote needed) when it is what the committed pointer names. Any other
    snapshot (a retrain, or the data a service without a generator brings) is pulled.
    """
    paths = ServicePaths(spec.name)
    expected = paths.recorded_md5
    if paths.snapshot.exists() and file_md5(paths.snapshot) == expected:
        return "present"
    if has_generator(spec):
        return _rebuild_default(spec, paths, expected)
    return _bring_snapshot(spec, paths, expected)


def _rebuild_default(spec: ServiceSpec, paths: ServicePaths, expected: str | None) -> str:
    params = load_params(spec.name).generate
    if params is None:
        raise ParamsError(
            f"{PARAMS_FILE}: services.{spec.name}.generate: missing; services/{spec.name}/"
            f"{GENERATOR_FILE} needs {{rows, seed}} to build the default snapshot"
        )
    paths.snapshot.parent.mkdir(parents=True, exist_ok=True)
    candidate = paths.snapshot.with_name(f".{paths.snapshot.name}.generated")
    generate(spec, params.rows, params.seed).to_parquet(candidate, index=False)
    actual = file_md5(candidate)
    if expected is None or actual == expected:
        candidate.replace(paths.snapshot)
        if expected is None:
            _dvc_add(paths)
        return "generated"
    candidate.unlink()  # never leave data in place that the pointer does not name
    if _dvc_pull(paths):
        return "pulled"
    raise DataError(
        f"{paths.snapshot_pointer}: snapshot {expected} is in no reachable DVC remote and "
        f"is not the default data (md5 {actual}); `dvc pull` it from its remote"
    )


def _bring_snapshot(spec: ServiceSpec, paths: ServicePaths, expected: str | None) -> str:
    """The snapshot of a service without a generator: pulled, or added where it lies."""
    snapshot, pointer = (
        p.relative_to(paths.root) for p in (paths.snapshot, paths.snapshot_pointer)
    )
    if expected is None:
        if not paths.snapshot.exists():
            raise DataError(
                f"{snapshot}: not found and services/{spec.name} has no {GENERATOR_FILE}: "
                f"put the service's data there and run `dvc add {snapshot}`"
            )
        _dvc_add(paths)
        return f"added to DVC: commit {pointer} (and `dvc push` the data)"
    if paths.snapshot.exists():  # changed since the pointer was written: never overwritten
        return (
            f"present but not the data {pointer} names: `dvc add {snapshot}` to record it, "
            f"or `dvc pull --force {pointer}` to restore it"
        )
    if _dvc_pull(paths):
        return "pulled"
    raise DataError(
        f"{snapshot}: not present and snapshot {expected} is in no reachable DVC remote; "
        f"run `dvc pull {pointer}` once its remote is reachable (`dvc remote list`)"
    )


def _dvc(paths: ServicePaths, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("dvc"), *args, "--quiet"], cwd=paths.root, capture_output=True, text=True
    )


def _dvc_add(paths: ServicePaths) -> None:
    result = _dvc(paths, "add", str(paths.snapshot))
    if result.returncode != 0:
        raise DataError(f"dvc add {paths.snapshot} failed: {result.stderr.strip()}")


def _dvc_pull(paths: ServicePaths) -> bool:
    result = _dvc(paths, "pull", str(paths.snapshot_pointer))
    if result.returncode != 0:
        log.debug("dvc pull %s failed: %s", paths.snapshot_pointer, result.stderr.strip())
    return result.returncode == 0 and paths.snapshot.exists()


def problem_report(problems: list[Problem], source: str) -> str:
    """A readable summary: counts per column, then the first problems by row."""
    per_column = Counter(p.column for p in problems)
    lines = [f"{source}: {len(problems)} invalid values"]
    lines += [f"  column '{col}': {count} rows" for col, count in per_column.most_common()]
    lines += [f"  {p}" for p in problems[:MAX_REPORTED_PROBLEMS]]
    return "\n".join(lines)


def prepare(spec: ServiceSpec) -> dict[str, int]:
    """DVC stage: validate the snapshot against the spec and split it deterministically."""
    paths = ServicePaths(spec.name)
    split = load_params(spec.name).split
    frame = pd.read_parquet(paths.snapshot)
    problems = validate_frame(spec, frame)
    if problems:
        raise DataError(problem_report(problems, str(paths.snapshot.relative_to(paths.root))))
    frame = frame[[*spec.feature_names, spec.target]]
    stratify = frame[spec.target] if spec.task == "binary" else None
    rest, test = train_test_split(
        frame, test_size=split.test, random_state=split.seed, stratify=stratify
    )
    stratify = rest[spec.target] if spec.task == "binary" else None
    train, valid = train_test_split(
        rest, test_size=split.valid / (1 - split.test), random_state=split.seed, stratify=stratify
    )
    paths.prepared.mkdir(parents=True, exist_ok=True)
    parts = {"train": train, "valid": valid, "test": test}
    for name, part in parts.items():
        part.reset_index(drop=True).to_parquet(paths.split(name), index=False)
    return {name: len(part) for name, part in parts.items()}


def load_split(spec: ServiceSpec, name: str) -> pd.DataFrame:
    return pd.read_parquet(ServicePaths(spec.name).split(name))
