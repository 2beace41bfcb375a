"""serving.gitops: a manifest change is a commit pushed to main before anything else, or nothing.

Real git repositories in a temporary folder: a working copy of the catalogue and infra/, and
bare remotes that accept, refuse (a pre-receive hook) or move ahead of it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from services.settings import PACKAGE_REPO
from serving import k8s
from serving.gitops import (
    GitRecordError,
    GitTarget,
    committed_text,
    local_remote,
    record,
)
from serving.manifest import manifest_path, set_model_version, versions

pytestmark = pytest.mark.unit
SERVICE = "fraud-detection"


def git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
    result = subprocess.run(["git", *identity, *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "work"
    for folder in ("services", "infra"):
        shutil.copytree(PACKAGE_REPO / folder, root / folder, ignore=shutil.ignore_patterns("__*"))
    git(tmp_path, "init", "-q", "-b", "main", str(root))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "start")
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(root))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    return root


def bare(tmp_path: Path, work: Path, name: str, refuse: bool = False) -> Path:
    remote = tmp_path / name
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(work, "push", "-q", str(remote), "main")
    if refuse:
        hook = remote / "hooks" / "pre-receive"
        hook.write_text("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n")
        hook.chmod(0o755)
    return remote


def release(target: GitTarget, version: str) -> str | None:
    return record(
        target,
        manifest_path(),
        lambda p: set_model_version(p, SERVICE, version),
        f"Release {SERVICE} v{version}",
    )


def served_by_rayservice(text: str) -> str | None:
    config = yaml.safe_load(yaml.safe_load(text)["spec"]["serveConfigV2"])
    apps = {app["name"]: app for app in config["applications"]}
    return (
        apps[SERVICE]["deployments"][0]["user_config"]["model_version"] if SERVICE in apps else None
    )


def test_a_release_is_one_commit_of_the_manifest_and_its_rayservice_on_the_remote(
    work: Path, tmp_path: Path
):
    remote = bare(tmp_path, work, "origin.git")
    commit = release(GitTarget.of(manifest_path(), str(remote)), "3")
    assert commit == git(remote, "rev-parse", "main") == git(work, "rev-parse", "HEAD")
    changed = set(git(remote, "diff", "--name-only", "main~1", "main").split())
    assert changed == {"infra/serve/production.yaml", "infra/k8s/rayservice.yaml"}
    assert versions(manifest_path())[SERVICE] == "3"
    assert served_by_rayservice(git(remote, "show", "main:infra/k8s/rayservice.yaml")) == "3"
    assert git(work, "status", "--porcelain") == ""


def test_a_refused_push_changes_nothing_and_says_why(work: Path, tmp_path: Path):
    remote = bare(tmp_path, work, "protected.git", refuse=True)
    head, tip = git(work, "rev-parse", "HEAD"), git(remote, "rev-parse", "main")
    before = {
        p: (work / p).read_bytes()
        for p in ("infra/serve/production.yaml", "infra/k8s/rayservice.yaml")
    }
    with pytest.raises(GitRecordError, match=r"main is protected.*nothing was changed$"):
        release(GitTarget.of(manifest_path(), str(remote)), "3")
    assert git(work, "rev-parse", "HEAD") == head and git(remote, "rev-parse", "main") == tip
    assert {p: (work / p).read_bytes() for p in before} == before
    assert git(work, "status", "--porcelain") == ""


def test_an_unreachable_remote_changes_nothing(work: Path, tmp_path: Path):
    head = git(work, "rev-parse", "HEAD")
    with pytest.raises(GitRecordError, match="nothing was changed"):
        release(GitTarget.of(manifest_path(), str(tmp_path / "no-such-remote.git")), "3")
    assert git(work, "rev-parse", "HEAD") == head
    assert versions(manifest_path())[SERVICE] is None


def test_a_remote_that_moved_is_rebased_onto(work: Path, tmp_path: Path):
    """Another service's release landed first: this one goes on top of it, both kept."""
    remote = bare(tmp_path, work, "origin.git")
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(remote), str(other))
    set_model_version(other / "infra/serve/production.yaml", "demand-forecast", "7")
    git(other, "commit", "-qam", "Release demand-forecast v7")
    git(other, "push", "-q", "origin", "main")

    commit = release(GitTarget.of(manifest_path(), str(remote)), "3")
    assert commit == git(remote, "rev-parse", "main")
    on_main = yaml.safe_load(committed_text(manifest_path(), commit))
    wanted = {
        a["name"]: a["deployments"][0]["user_config"]["model_version"]
        for a in on_main["applications"]
    }
    assert wanted == {"demand-forecast": "7", SERVICE: "3"}


def test_uncommitted_manifest_edits_are_refused_before_anything(work: Path):
    path = manifest_path()
    path.write_text(path.read_text() + "# a hand edit\n")
    with pytest.raises(GitRecordError, match="uncommitted changes"):
        release(GitTarget.of(path), "3")
    assert path.read_text().endswith("# a hand edit\n")
    assert git(work, "log", "--format=%s") == "start"


def test_without_a_remote_the_change_is_a_local_commit(work: Path):
    commit = release(GitTarget.of(manifest_path()), "4")
    assert commit == git(work, "rev-parse", "HEAD")
    assert git(work, "log", "-1", "--format=%s") == f"Release {SERVICE} v4"
    assert release(GitTarget.of(manifest_path()), "4") is None  # nothing new to record


def test_writing_the_manifest_leaves_the_rayservice_to_its_renderer(work: Path):
    rayservice = k8s.k8s_path().read_text()
    set_model_version(manifest_path(), SERVICE, "5")
    assert k8s.k8s_path().read_text() == rayservice


def test_outside_git_a_change_is_refused(tmp_path: Path):
    loose = tmp_path / "loose" / "production.yaml"
    loose.parent.mkdir()
    loose.write_text("applications: []\n")
    with pytest.raises(GitRecordError, match="not in a git working tree"):
        GitTarget.of(loose)


def test_the_local_remote_is_made_once_from_main(work: Path, tmp_path: Path):
    home = tmp_path / "home"
    remote = local_remote(home, work)
    assert remote == home / "gitops.git"
    assert git(remote, "rev-parse", "main") == git(work, "rev-parse", "main")
    git(work, "commit", "-q", "--allow-empty", "-m", "later")
    assert local_remote(home, work) == remote  # kept as it is: what workflows pushed stays
    assert git(remote, "log", "--format=%s", "main") == "start"
