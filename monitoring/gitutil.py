"""Git without touching the user's checkout: plumbing commits on a branch and scratch worktrees.

Nothing here changes the current branch, the index or the working tree of the repository:
commits are built in a temporary index (`read-tree` / `update-index` / `write-tree` /
`commit-tree` / `update-ref`); files that need a real checkout are made in a detached
`git worktree` under a temporary directory, removed afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

log = logging.getLogger(__name__)
BOT_NAME = "mlops-monitor"
BOT_EMAIL = "mlops-monitor@localhost"


class GitError(RuntimeError):
    """A git command failed; the message holds the command and git's stderr."""


def git(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    strip: bool = True,
) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise GitError(f"git {' '.join(args)} (in {cwd}): {result.stderr.strip()}")
    return result.stdout.strip() if strip else result.stdout


def rev_parse(ref: str, cwd: Path) -> str | None:
    try:
        return git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=cwd)
    except GitError:
        return None


def current_branch(cwd: Path) -> str | None:
    try:
        return git("symbolic-ref", "--quiet", "--short", "HEAD", cwd=cwd)
    except GitError:
        return None  # detached HEAD


def identity_env(cwd: Path) -> dict[str, str]:
    """Author/committer for commits: the configured identity, else the monitor's own."""
    try:
        configured = git("config", "user.email", cwd=cwd)
    except GitError:
        configured = ""
    if configured:
        return {}
    return {
        "GIT_AUTHOR_NAME": BOT_NAME,
        "GIT_AUTHOR_EMAIL": BOT_EMAIL,
        "GIT_COMMITTER_NAME": BOT_NAME,
        "GIT_COMMITTER_EMAIL": BOT_EMAIL,
    }


def show_file(cwd: Path, ref: str, path: str) -> str | None:
    try:
        return git("show", f"{ref}:{path}", cwd=cwd, strip=False)
    except GitError:
        return None


def commit_files(
    repo: Path, branch: str, base: str, files: Mapping[str, str], message: str
) -> tuple[str, bool]:
    """Commit `files` (path -> text) on `branch` (created from `base` if missing).

    Returns (branch tip, whether a new commit was made): no commit when the files already
    have this content on the branch.
    """
    if current_branch(repo) == branch:
        raise GitError(f"{repo}: '{branch}' is checked out; switch branch before the monitor runs")
    existing = rev_parse(f"refs/heads/{branch}", repo)
    parent = existing or rev_parse(base, repo)
    if parent is None:
        raise GitError(f"{repo}: base '{base}' is not a commit")
    with tempfile.TemporaryDirectory() as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git("read-tree", parent, cwd=repo, env=index)
        for path, text in sorted(files.items()):
            blob = git("hash-object", "-w", "--stdin", cwd=repo, stdin=text)
            git(
                "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", cwd=repo, env=index
            )
        tree = git("write-tree", cwd=repo, env=index)
    if tree == git("rev-parse", f"{parent}^{{tree}}", cwd=repo):
        if existing is None:
            git("update-ref", f"refs/heads/{branch}", parent, "", cwd=repo)
        return parent, False
    commit = git("commit-tree", tree, "-p", parent, "-m", message, cwd=repo, env=identity_env(repo))
    git("update-ref", f"refs/heads/{branch}", commit, existing or "", cwd=repo)
    log.info("committed %s on %s", commit[:10], branch)
    return commit, True


@contextlib.contextmanager
def scratch_worktree(repo: Path, ref: str = "HEAD") -> Iterator[Path]:
    """A detached checkout of `ref` in a temporary directory, removed on exit."""
    parent = Path(tempfile.mkdtemp(prefix="mlops-worktree-"))
    tree = parent / "tree"
    git("worktree", "add", "--detach", "--quiet", str(tree), ref, cwd=repo)
    try:
        yield tree
    finally:
        try:
            git("worktree", "remove", "--force", str(tree), cwd=repo)
        except GitError as exc:
            log.warning("could not remove worktree %s: %s", tree, exc)
        git("worktree", "prune", cwd=repo)
        with contextlib.suppress(OSError):
            parent.rmdir()


def changed_files(tree: Path) -> dict[str, str]:
    """Modified and new (not ignored) files of a worktree, path -> text."""
    names = git("diff", "--name-only", "HEAD", cwd=tree).splitlines()
    names += git("ls-files", "--others", "--exclude-standard", cwd=tree).splitlines()
    return {
        name: (tree / name).read_text() for name in sorted(set(names)) if (tree / name).is_file()
    }
