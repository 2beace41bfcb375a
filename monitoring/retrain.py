"""The retrain change: a new DVC snapshot (previous + labelled production rows), pushed to the
DVC remote, and the pointer change that the retrain pull request proposes.

All file work happens in a scratch `git worktree` of HEAD that shares the repository's DVC
cache and remote (set with `--local` config in the worktree, so relative remote paths still
point at the main checkout's remote); the user's checkout is never touched.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from monitoring.pull_requests import Change
from monitoring.snapshot import SnapshotStats, labelled_rows, merge_snapshot
from services.gitutil import changed_files, scratch_worktree
from services.layout import ServicePaths, file_md5
from services.settings import tool
from services.spec import ServiceSpec

log = logging.getLogger(__name__)
DVC_ENV = {"DVC_NO_ANALYTICS": "1"}


class SnapshotUnavailable(RuntimeError):
    """The current training snapshot is neither in the DVC cache/remote nor in the checkout."""


def retrain_branch(service: str) -> str:
    return f"monitor/{service}/retrain"


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [tool("dvc"), *args],
        cwd=cwd,
        env={**os.environ, **DVC_ENV},
        capture_output=True,
        text=True,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} (in {cwd}) failed: {result.stderr.strip()}")
    return result


def share_dvc_state(tree: Path, repo: Path) -> None:
    """Point the worktree at the main checkout's DVC cache, remotes and default remote.

    Written as the worktree's `.dvc/config.local` (git-ignored): one `dvc config --list` in
    the main checkout gives every setting of every level (the checkout's own local config,
    such as the production profile's S3 remote, included) with local paths made absolute.
    """
    settings = {}
    for line in dvc("config", "--list", cwd=repo).stdout.splitlines():
        key, _, value = line.strip().partition("=")
        settings[key] = value  # later levels (local) override earlier ones (repo)
    cache = settings.get("cache.dir") or str(repo / ".dvc" / "cache")
    lines = ["[cache]", f"    dir = {cache}"]
    if "core.remote" in settings:
        lines += ["[core]", f"    remote = {settings['core.remote']}"]
    for key, url in settings.items():
        name = key.removeprefix("remote.").removesuffix(".url")
        if key.startswith("remote.") and key.endswith(".url"):
            lines += [f"['remote \"{name}\"']", f"    url = {url}"]
    (tree / ".dvc" / "config.local").write_text("\n".join(lines) + "\n")


def previous_snapshot(tree_paths: ServicePaths, repo_paths: ServicePaths) -> pd.DataFrame:
    """The snapshot the base commit points at: the checkout's copy when its md5 matches the
    pointer (a fresh clone regenerates the default data), else `dvc pull` (cache or remote)."""
    expected = tree_paths.recorded_md5
    if expected is None:
        raise SnapshotUnavailable(f"{repo_paths.snapshot_pointer}: no DVC pointer committed")
    pulled = dvc(
        "pull", "--quiet", str(tree_paths.snapshot_pointer), cwd=tree_paths.root, check=False
    )
    if pulled.returncode == 0 and tree_paths.snapshot.exists():
        return pd.read_parquet(tree_paths.snapshot)
    log.info(
        "dvc pull of the snapshot failed (%s); using the checkout's copy", pulled.stderr.strip()
    )
    local = repo_paths.snapshot
    if local.exists() and file_md5(local) == expected:
        return pd.read_parquet(local)
    raise SnapshotUnavailable(
        f"{repo_paths.snapshot}: snapshot {expected} is not in the DVC cache or remote and the "
        "checkout's copy differs; run `mlops data init` first"
    )


@dataclass(frozen=True)
class RetrainChange:
    change: Change
    stats: SnapshotStats
    md5: str


def build_retrain_change(
    spec: ServiceSpec, labelled: pd.DataFrame, evidence: str, repo: Path, title: str
) -> RetrainChange:
    """Write, `dvc add` and `dvc push` the next snapshot; return the pointer change."""
    repo_paths = ServicePaths(spec.name, root=repo)
    with scratch_worktree(repo) as tree:
        share_dvc_state(tree, repo)
        tree_paths = ServicePaths(spec.name, root=tree)
        previous = previous_snapshot(tree_paths, repo_paths)
        merged, stats = merge_snapshot(spec, previous, labelled_rows(spec, labelled))
        merged.to_parquet(tree_paths.snapshot, index=False)
        relative = str(tree_paths.snapshot.relative_to(tree))
        dvc("add", "--quiet", relative, cwd=tree)
        dvc("push", "--quiet", f"{relative}.dvc", cwd=tree)
        files = changed_files(tree)
        md5 = tree_paths.recorded_md5 or "?"
    log.info("%s: snapshot %s pushed (%d rows)", spec.name, md5, stats.total_rows)
    body = _body(spec, stats, md5, evidence)
    change = Change(
        branch=retrain_branch(spec.name),
        title=title,
        body=body,
        files=files,
        commit_message=(
            f"Retrain {spec.name}: snapshot {md5[:8]} (+{stats.added_rows} production rows)"
        ),
    )
    return RetrainChange(change, stats, md5)


def _body(spec: ServiceSpec, stats: SnapshotStats, md5: str, evidence: str) -> str:
    return "\n".join(
        [
            f"The monitor found input drift on `{spec.name}`. This pull request adds the "
            "labelled production rows of the window to the training snapshot; merging it makes "
            "CI run `dvc repro` and register a new version.",
            "",
            "| snapshot | rows |",
            "| --- | --- |",
            f"| previous | {stats.previous_rows} |",
            f"| labelled production rows | {stats.labelled_rows} |",
            f"| dropped: failed validation | {stats.invalid_rows} |",
            f"| dropped: duplicates | {stats.duplicate_rows} |",
            f"| added | {stats.added_rows} |",
            f"| new snapshot (md5 `{md5}`) | {stats.total_rows} |",
            "",
            "The snapshot is in the DVC remote (`dvc pull` fetches it).",
            "",
            evidence,
        ]
    )
