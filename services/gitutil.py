"""Git for the platform: plumbing commits on other branches, scratch worktrees, and commits of
named files on the current branch pushed to a remote.

`commit_files` and `scratch_worktree` never change the current branch, the index or the
working tree: commits are built in a temporary index (`read-tree` / `update-index` /
`write-tree` / `commit-tree` / `update-ref`); files that need a real checkout are made in a
detached `git worktree` under a temporary directory, removed afterwards. `commit_paths`,
`push` and `reset_to` work on the checked-out branch and touch only the files they name.
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
PUSH_ATTEMPTS = 3  # a push refused because the remote moved is rebased and retried


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
        said = "; ".join(line.strip() for line in result.stderr.splitlines() if line.strip())
        raise GitError(f"git {' '.join(args)} (in {cwd}): {said}")
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
    """Author/committer for commits: the configured identity (git config or the GIT_AUTHOR_*
    and GIT_COMMITTER_* environment), else the platform's own."""
    if os.environ.get("GIT_AUTHOR_EMAIL") and os.environ.get("GIT_COMMITTER_EMAIL"):
        return {}
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


def working_files(repo: Path, *paths: str) -> list[str]:
    """Files of the working tree under `paths` (all when none) that a checkout of it would
    hold: tracked and untracked, not ignored, not deleted; sorted, relative to `repo`."""
    options = ("-z", "--cached", "--others", "--exclude-standard")
    listed = git("ls-files", *options, "--", *paths, cwd=repo, strip=False)
    return sorted({name for name in listed.split("\0") if name and (repo / name).is_file()})


def toplevel(path: Path) -> Path:
    """The root of the git working tree that holds `path`."""
    where = path if path.is_dir() else path.parent
    try:
        return Path(git("rev-parse", "--show-toplevel", cwd=where))
    except (GitError, FileNotFoundError):
        raise GitError(f"{path} is not in a git working tree") from None


def uncommitted(repo: Path, paths: list[str]) -> list[str]:
    """Those of `paths` with staged or unstaged changes."""
    lines = git("status", "--porcelain", "--", *paths, cwd=repo, strip=False).splitlines()
    return [line[3:] for line in lines if line.strip()]


def commit_paths(repo: Path, paths: list[str], message: str) -> str | None:
    """Commit the current content of `paths` (and nothing else) on the checked-out branch;
    returns the new commit, or None when they do not differ from HEAD."""
    git("add", "--", *paths, cwd=repo)
    if not git("diff", "--cached", "--name-only", "HEAD", "--", *paths, cwd=repo):
        return None
    git("commit", "-q", "--only", "-m", message, "--", *paths, cwd=repo, env=identity_env(repo))
    return git("rev-parse", "HEAD", cwd=repo)


def push(repo: Path, remote: str, branch: str) -> None:
    """Push HEAD to `branch` of `remote`; when the remote moved meanwhile (another release),
    rebase onto it and retry. Raises GitError with git's reason when it stays refused."""
    env = identity_env(repo)  # credentials, if any, come from the caller's environment
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        try:
            git("push", "--quiet", remote, f"HEAD:refs/heads/{branch}", cwd=repo, env=env)
            return
        except GitError as exc:
            refused = exc
        log.warning("push to %s %s refused (attempt %d): %s", remote, branch, attempt, refused)
        try:
            git("pull", "--quiet", "--rebase", "--no-tags", remote, branch, cwd=repo, env=env)
        except GitError:
            with contextlib.suppress(GitError):
                git("rebase", "--abort", cwd=repo)
            break
    raise refused


def reset_to(repo: Path, commit: str) -> None:
    """Move the checked-out branch back to `commit`, keeping unrelated local changes."""
    with contextlib.suppress(GitError):
        git("rebase", "--abort", cwd=repo)
    git("reset", "--quiet", "--keep", commit, cwd=repo)
