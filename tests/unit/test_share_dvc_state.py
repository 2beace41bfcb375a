"""A scratch worktree sees the main checkout's DVC cache, remotes and default remote, those of
the checkout's local (untracked) config included: the production profile's S3 remote."""

from __future__ import annotations

import subprocess
from pathlib import Path

from monitoring.retrain import dvc, share_dvc_state


def checkout(path: Path) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    dvc("init", "-q", cwd=path)
    return path


def test_the_worktree_gets_every_remote_and_the_local_default(tmp_path: Path):
    repo, tree = checkout(tmp_path / "repo"), checkout(tmp_path / "tree")
    dvc("remote", "add", "--default", "local", "../remote", cwd=repo)
    dvc("remote", "add", "--local", "--default", "production", "s3://bucket/dvc", cwd=repo)
    share_dvc_state(tree, repo)
    remotes = [line.split()[:2] for line in dvc("remote", "list", cwd=tree).stdout.splitlines()]
    assert remotes == [["local", str(tmp_path / "remote")], ["production", "s3://bucket/dvc"]]
    assert dvc("remote", "default", cwd=tree).stdout.strip() == "production"
    assert dvc("cache", "dir", cwd=tree).stdout.strip() == str(repo / ".dvc" / "cache")


def test_without_a_default_remote_none_is_set(tmp_path: Path):
    repo, tree = checkout(tmp_path / "repo"), checkout(tmp_path / "tree")
    dvc("remote", "add", "local", "../remote", cwd=repo)
    share_dvc_state(tree, repo)
    assert "No default remote" in dvc("remote", "default", cwd=tree, check=False).stdout
