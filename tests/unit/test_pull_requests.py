"""The local pull-request opener in a throwaway git repository."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from monitoring.pull_requests import Change, GitHubOpener, LocalOpener, opener_from_env

pytestmark = pytest.mark.unit
BRANCH = "monitor/fraud-detection/retrain"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "dev")
    git(root, "config", "user.email", "dev@example.com")
    (root / "data").mkdir()
    (root / "data" / "snapshot.parquet.dvc").write_text("outs:\n- md5: aaa\n")
    (root / "README.md").write_text("hello\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    return root


def change(md5: str, body: str = "drift table") -> Change:
    return Change(
        branch=BRANCH,
        title="Retrain fraud-detection",
        body=body,
        files={"data/snapshot.parquet.dvc": f"outs:\n- md5: {md5}\n"},
        commit_message=f"Retrain fraud-detection on snapshot {md5}",
    )


def test_opens_branch_commit_and_record_without_touching_the_checkout(repo, tmp_path):
    (repo / "README.md").write_text("local edit\n")  # the user's uncommitted work
    opener = LocalOpener(repo=repo, records=tmp_path / "prs")
    result = opener.open_or_update(change("bbb"))

    assert result.created and result.committed
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(repo, "status", "--porcelain") == "M README.md"
    assert git(repo, "show", f"{BRANCH}:data/snapshot.parquet.dvc") == "outs:\n- md5: bbb"
    assert (
        git(repo, "log", "--format=%s", "-1", BRANCH) == "Retrain fraud-detection on snapshot bbb"
    )
    assert git(repo, "rev-parse", f"{BRANCH}~1") == git(repo, "rev-parse", "main")
    assert (repo / "data" / "snapshot.parquet.dvc").read_text() == "outs:\n- md5: aaa\n"

    record = json.loads((tmp_path / "prs" / "monitor__fraud-detection__retrain.json").read_text())
    assert record["branch"] == BRANCH and record["base"] == "main" and record["state"] == "open"
    assert record["head"] == result.commit == git(repo, "rev-parse", BRANCH)
    body = Path(result.url).read_text()
    assert body.startswith("# Retrain fraud-detection") and "drift table" in body


def test_second_call_updates_the_same_record_and_commits_only_on_change(repo, tmp_path):
    opener = LocalOpener(repo=repo, records=tmp_path / "prs")
    first = opener.open_or_update(change("bbb"))
    same = opener.open_or_update(change("bbb", body="drift table, run 2"))

    assert not same.created and not same.committed
    assert same.commit == first.commit and same.url == first.url
    assert "run 2" in Path(same.url).read_text()
    assert git(repo, "rev-list", "--count", f"main..{BRANCH}") == "1"

    changed = opener.open_or_update(change("ccc"))
    assert not changed.created and changed.committed
    assert git(repo, "rev-list", "--count", f"main..{BRANCH}") == "2"
    record = json.loads((tmp_path / "prs" / "monitor__fraud-detection__retrain.json").read_text())
    assert record["commits"] == [first.commit, changed.commit]
    assert sorted(p.name for p in (tmp_path / "prs").iterdir()) == [
        "monitor__fraud-detection__retrain.json",
        "monitor__fraud-detection__retrain.md",
    ]


def test_commits_without_a_configured_identity(repo, tmp_path, monkeypatch):
    git(repo, "config", "--unset", "user.email")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "empty-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    result = LocalOpener(repo=repo, records=tmp_path / "prs").open_or_update(change("ddd"))
    assert git(repo, "log", "-1", "--format=%ae", result.commit) == "mlops-monitor@localhost"


def test_refuses_to_move_a_checked_out_branch(repo, tmp_path):
    git(repo, "checkout", "-qb", BRANCH)
    with pytest.raises(RuntimeError, match="checked out"):
        LocalOpener(repo=repo, records=tmp_path / "prs").open_or_update(change("bbb"))


def test_factory_picks_github_only_with_token_and_repository():
    assert isinstance(opener_from_env({}), LocalOpener)
    assert isinstance(opener_from_env({"GITHUB_REPOSITORY": "o/r"}), LocalOpener)
    opener = opener_from_env(
        {"GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "o/r", "GITHUB_API_URL": "http://x"}
    )
    assert isinstance(opener, GitHubOpener)
    assert (opener.repository, opener.api_url) == ("o/r", "http://x")
