"""Pull-request openers: GitHub (REST API through PyGithub) or local (branch + record file).

Both are idempotent per branch: a second call with the same branch updates the open pull
request (or the local record) and adds a commit only when the files changed.

`opener_from_env()` picks GitHub when GITHUB_TOKEN and GITHUB_REPOSITORY are set (optional
GITHUB_API_URL for GitHub Enterprise), else the local opener (e.g. under `act`, no token).
A pull request opened with a workflow's default GITHUB_TOKEN starts no workflows: give the
monitor a GitHub App token or a PAT (see docs/MONITORING.md) so CI runs on it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from services.gitutil import commit_files, current_branch
from services.settings import get_settings, repo_root

log = logging.getLogger(__name__)
RECORDS_DIR = "pull-requests"


@dataclass(frozen=True)
class Change:
    """What a pull request proposes: text files to write on `branch`, and its description."""

    branch: str
    title: str
    body: str
    files: dict[str, str]  # repository-relative path -> new content
    commit_message: str
    base: str | None = None  # None: the opener's default (local: current branch; GitHub: default)


@dataclass(frozen=True)
class PullRequestResult:
    branch: str
    url: str  # the pull request's web URL, or the path of the local record
    created: bool  # False: an open pull request for the branch was updated
    committed: bool  # a new commit was added to the branch
    number: int | None = None
    commit: str | None = None


class PullRequestOpener(Protocol):
    def open_or_update(self, change: Change) -> PullRequestResult: ...


def record_name(branch: str) -> str:
    return branch.replace("/", "__")


@dataclass
class LocalOpener:
    """Branch + commit in the local repository; title/body in <MLOPS_HOME>/pull-requests/."""

    repo: Path = field(default_factory=repo_root)
    records: Path = field(default_factory=lambda: get_settings().home / RECORDS_DIR)

    def open_or_update(self, change: Change) -> PullRequestResult:
        base = change.base or current_branch(self.repo) or "HEAD"
        commit, committed = commit_files(
            self.repo, change.branch, base, change.files, change.commit_message
        )
        self.records.mkdir(parents=True, exist_ok=True)
        json_path = self.records / f"{record_name(change.branch)}.json"
        md_path = json_path.with_suffix(".md")
        previous = json.loads(json_path.read_text()) if json_path.exists() else None
        now = datetime.now(UTC).isoformat(timespec="seconds")
        commits = [*(previous or {}).get("commits", [])]
        if commit not in commits:
            commits.append(commit)
        record = {
            "branch": change.branch,
            "base": base,
            "title": change.title,
            "state": "open",
            "head": commit,
            "commits": commits,
            "files": sorted(change.files),
            "created_at": (previous or {}).get("created_at", now),
            "updated_at": now,
            "body_path": str(md_path),
        }
        md_path.write_text(f"# {change.title}\n\n{change.body.rstrip()}\n")
        json_path.write_text(json.dumps(record, indent=2) + "\n")
        verb = "updated" if previous else "opened"
        log.info("local pull request %s: %s (branch %s)", verb, md_path, change.branch)
        return PullRequestResult(
            branch=change.branch,
            url=str(md_path),
            created=previous is None,
            committed=committed,
            commit=commit,
        )


@dataclass
class GitHubOpener:
    """The GitHub REST API: branch ref, file commits via the contents API, one PR per branch."""

    token: str
    repository: str  # owner/name
    api_url: str | None = None
    throttle: bool = True  # PyGithub's pauses between calls (GitHub's secondary rate limits)

    def _repo(self) -> Any:
        from github import Auth, Github

        kwargs: dict[str, Any] = {"auth": Auth.Token(self.token)}
        if not self.throttle:
            kwargs |= {"seconds_between_requests": None, "seconds_between_writes": None}
        if self.api_url:
            kwargs["base_url"] = self.api_url.rstrip("/")
        return Github(**kwargs).get_repo(self.repository)

    def open_or_update(self, change: Change) -> PullRequestResult:
        repo = self._repo()
        base = change.base or repo.default_branch
        self._ensure_branch(repo, change.branch, base)
        commit, committed = None, False
        for path, text in sorted(change.files.items()):
            sha = self._put_file(repo, change.branch, path, text, change.commit_message)
            if sha is not None:
                commit, committed = sha, True
        owner = self.repository.split("/")[0]
        existing = list(repo.get_pulls(state="open", head=f"{owner}:{change.branch}", base=base))
        if existing:
            pull = existing[0]
            pull.edit(title=change.title, body=change.body)
            log.info("updated pull request #%s %s", pull.number, pull.html_url)
        else:
            pull = repo.create_pull(
                base=base, head=change.branch, title=change.title, body=change.body
            )
            log.info("opened pull request #%s %s", pull.number, pull.html_url)
        return PullRequestResult(
            branch=change.branch,
            url=pull.html_url,
            created=not existing,
            committed=committed,
            number=pull.number,
            commit=commit,
        )

    @staticmethod
    def _ensure_branch(repo: Any, branch: str, base: str) -> None:
        from github import GithubException

        try:
            repo.get_git_ref(f"heads/{branch}").object  # noqa: B018 (lazy: completes with a GET)
        except GithubException as exc:
            if exc.status != 404:
                raise
            sha = repo.get_git_ref(f"heads/{base}").object.sha
            repo.create_git_ref(ref=f"refs/heads/{branch}", sha=sha)
            log.info("created branch %s from %s (%s)", branch, base, sha[:10])

    @staticmethod
    def _put_file(repo: Any, branch: str, path: str, text: str, message: str) -> str | None:
        """Create or update one file on `branch`; returns the new commit sha (None: unchanged)."""
        from github import GithubException

        try:
            current = repo.get_contents(path, ref=branch)
        except GithubException as exc:
            if exc.status != 404:
                raise
            result = repo.create_file(path, message, text, branch=branch)
            return str(result["commit"].sha)
        if current.decoded_content.decode() == text:
            return None
        result = repo.update_file(path, message, text, current.sha, branch=branch)
        return str(result["commit"].sha)


def opener_from_env(env: dict[str, str] | None = None) -> PullRequestOpener:
    """GitHub when GITHUB_TOKEN and GITHUB_REPOSITORY are set, else local."""
    env = dict(os.environ) if env is None else env
    token, repository = env.get("GITHUB_TOKEN"), env.get("GITHUB_REPOSITORY")
    if token and repository:
        return GitHubOpener(token, repository, env.get("GITHUB_API_URL"))
    return LocalOpener()


def describe(result: PullRequestResult) -> dict[str, Any]:
    return asdict(result)
