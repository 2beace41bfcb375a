"""Changes to what runs, git-first: a manifest edit (and the RayService rendered from it) is
committed and pushed to main before anything else changes, and deploys read what main says.

A change that git refuses (a rejected or unreachable push) is undone in the working tree and
reported; nothing else has changed at that point, so git, the registry and the cluster agree.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.gitutil import (
    GitError,
    commit_paths,
    git,
    push,
    reset_to,
    rev_parse,
    show_file,
    toplevel,
    uncommitted,
)
from serving import k8s
from serving.manifest import ManifestError, manifest_path, set_model_version, versions

if TYPE_CHECKING:  # MLflow is imported where a client is used, not by this module
    from mlflow import MlflowClient

log = logging.getLogger(__name__)
MAIN = "main"
LOCAL_REMOTE = "gitops.git"  # under MLOPS_HOME


class GitRecordError(RuntimeError):
    """A change to what runs that git did not record; nothing was changed."""


@dataclass(frozen=True)
class GitTarget:
    """Where changes are recorded: the working tree holding the manifest, and the branch of the
    remote they are pushed to (no remote: a commit on the checked-out branch only)."""

    repo: Path
    remote: str | None = None
    branch: str = MAIN

    @classmethod
    def of(cls, manifest_file: Path, remote: str | None = None, branch: str = MAIN) -> GitTarget:
        try:
            return cls(toplevel(manifest_file.resolve()), remote or None, branch)
        except GitError as exc:
            raise GitRecordError(f"{exc}: git is the record of what runs") from None

    def where(self) -> str:
        return f"{self.remote} {self.branch}" if self.remote else f"the local branch of {self.repo}"


def recorded_files(manifest_file: Path) -> list[Path]:
    """The manifest and, for the production manifest, the RayService rendered from it."""
    if manifest_file.resolve() == manifest_path().resolve():
        return [manifest_file, k8s.k8s_path()]
    return [manifest_file]


def record(
    target: GitTarget, manifest_file: Path, edit: Callable[[Path], object], message: str
) -> str | None:
    """Edit the manifest, re-render its RayService, commit both and push them.

    Returns the commit on the target branch (None: the edit changed nothing). On any failure
    the branch and the files are put back as they were and the error says why.
    """
    files = recorded_files(manifest_file)
    paths = [str(f.resolve().relative_to(target.repo)) for f in files]
    dirty = uncommitted(target.repo, paths)
    if dirty:
        raise GitRecordError(
            f"{', '.join(dirty)}: uncommitted changes; commit or discard them first "
            "(a change to what runs starts from what git says)"
        )
    base = git("rev-parse", "HEAD", cwd=target.repo)
    try:
        edit(manifest_file)
        if len(files) > 1:
            k8s.write(manifest_file, files[1])
        commit = commit_paths(target.repo, paths, message)
        if commit is not None and target.remote:
            push(target.repo, target.remote, target.branch)
            commit = git("rev-parse", "HEAD", cwd=target.repo)  # rebased onto the remote
    except BaseException as exc:
        reset_to(target.repo, base)
        git("checkout", base, "--", *paths, cwd=target.repo)
        if isinstance(exc, GitError):
            raise GitRecordError(
                f"git did not record the change ({target.where()}): {exc}; nothing was changed"
            ) from None
        raise
    if commit:
        log.info("recorded %s on %s: %s", commit[:10], target.where(), message.splitlines()[0])
    return commit


def committed_text(manifest_file: Path, ref: str = MAIN) -> str:
    """The manifest as commit `ref` has it (what main says runs)."""
    repo = GitTarget.of(manifest_file).repo
    relative = str(manifest_file.resolve().relative_to(repo))
    text = show_file(repo, ref, relative)
    if text is None:
        raise ManifestError(f"{relative}: not found at '{ref}' in {repo}")
    return text


@contextmanager
def manifest_copy(text: str, name: str = "manifest.yaml") -> Iterator[Path]:
    """`text` as a manifest file in a temporary folder, removed on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / name
        copy.write_text(text)
        yield copy


def local_remote(home: Path, repo: Path) -> Path:
    """The bare repository under MLOPS_HOME that plays GitHub for workflows run with act:
    created on first use and seeded with `repo`'s main (else its HEAD)."""
    remote = home / LOCAL_REMOTE
    if not (remote / "HEAD").is_file():
        remote.parent.mkdir(parents=True, exist_ok=True)
        git("init", "--quiet", "--bare", "-b", MAIN, str(remote), cwd=remote.parent)
        source = MAIN if rev_parse(f"refs/heads/{MAIN}", repo) else "HEAD"
        git("push", "--quiet", str(remote), f"{source}:refs/heads/{MAIN}", cwd=repo)
        log.info("created %s from %s of %s", remote, source, repo)
    return remote


def deployed_version(service: str, ref: str = MAIN) -> str | None:
    """The version that the production manifest at `ref` (main) names for `service`: what
    runs, whatever an alias says."""
    path = manifest_path()
    with manifest_copy(committed_text(path, ref), path.name) as copy:
        return versions(copy).get(service)


def version_on_main(client: MlflowClient, service: str) -> tuple[str | None, str | None]:
    """The version the manifest on main names, and how the `production` alias disagrees with
    it (None when it agrees): what runs is what main names."""
    from services.registry import PRODUCTION, aliased_number

    version = deployed_version(service)
    alias = aliased_number(client, service, PRODUCTION)
    if version is None or alias == version:
        return version, None
    named = f"v{alias}" if alias else "no version"
    return version, (
        f"the '{PRODUCTION}' alias names {named} but the manifest on main names v{version}, "
        "which runs (`mlops deploy` aligns the alias)"
    )


def record_version(
    target: GitTarget, manifest_file: Path, service: str, version: str | None, message: str
) -> str | None:
    """`record` of the one edit every change to what runs makes: `service`'s model version."""
    return record(target, manifest_file, lambda p: set_model_version(p, service, version), message)


def commit_version(service: str, version: str | None, message: str) -> str | None:
    """Record on the checked-out branch that the production manifest names `version` of
    `service` (what a merged pull request does); nothing else changes."""
    path = manifest_path()
    return record_version(GitTarget.of(path), path, service, version, message)
