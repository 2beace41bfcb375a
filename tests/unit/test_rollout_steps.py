"""The steps of a rollout as manifest edits (no MLflow, no Ray): the policy's order, completion,
abort, hand-written traffic, and the pull request of a step."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from monitoring import rollout_job
from monitoring.pull_requests import Change, PullRequestResult
from services.inference_log import CANARY, SHADOW
from services.settings import PACKAGE_REPO
from serving import manifest, rollout
from serving.routing import RolloutTraffic
from tests.rollouts import rollout_policy

pytestmark = pytest.mark.unit
SERVICE = "fraud-detection"


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A catalogue with a rollout policy and a manifest serving v1."""
    shutil.copytree(PACKAGE_REPO / "services", tmp_path / "services")
    shutil.copy(PACKAGE_REPO / "params.yaml", tmp_path)
    path = tmp_path / "infra" / "serve" / "production.yaml"
    path.parent.mkdir(parents=True)
    shutil.copy(manifest.manifest_path(), path)
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(tmp_path))
    manifest.set_model_version(path, SERVICE, "1")
    with rollout_policy(tmp_path, SERVICE):
        yield path


def test_a_rollout_walks_the_policy_steps_then_completes(tree):
    policy = rollout.policy(SERVICE)
    manifest.set_model_version(tree, SERVICE, "1", rollout.step_traffic(policy, "2", 1))
    seen = []
    while True:
        step = rollout.plan_advance(tree, SERVICE, "analysis text")
        step.after.edit(SERVICE)(tree)
        seen.append((step.action, step.after.stable, step.after.rollout))
        if step.action == "complete":
            break
    assert [(a, s, t and (t.mode, t.weight, t.step)) for a, s, t in seen] == [
        ("advance", "1", (CANARY, 10, 2)),
        ("advance", "1", (CANARY, 50, 3)),
        ("complete", "2", None),
    ]
    assert manifest.versions(tree)[SERVICE] == "2" and manifest.rollouts(tree) == {}
    assert step.message.endswith("analysis text")
    assert "previous v1" in step.message.splitlines()[0]


def test_an_abort_puts_every_request_back_on_stable(tree):
    manifest.set_model_version(
        tree, SERVICE, "1", RolloutTraffic(candidate="2", mode=CANARY, weight=10)
    )
    step = rollout.plan_abort(tree, SERVICE, "p99 latency 180 ms > 100 ms")
    step.after.edit(SERVICE)(tree)
    assert manifest.versions(tree)[SERVICE] == "1" and manifest.rollouts(tree) == {}
    assert "p99 latency 180 ms" in step.message and step.candidate == "2"


def test_hand_written_traffic_without_a_step_continues_from_its_match(tree):
    policy = rollout.policy(SERVICE)
    hand = RolloutTraffic(candidate="2", mode=CANARY, weight=10)  # no step, no since
    assert rollout.step_index(policy, hand) == 2
    odd = RolloutTraffic(candidate="2", mode=SHADOW, weight=20)  # not in the policy
    assert rollout.step_index(policy, odd) == 0
    manifest.set_model_version(tree, SERVICE, "1", odd)
    assert rollout.plan_advance(tree, SERVICE).after.rollout.step == 1  # the first step


def test_steps_are_refused_without_a_rollout_or_a_policy(tree):
    with pytest.raises(rollout.RolloutError, match="no rollout in progress"):
        rollout.plan_advance(tree, SERVICE)
    with pytest.raises(rollout.RolloutError, match="no rollout policy"):
        rollout.policy("demand-forecast")
    assert rollout.rolls_out(tree, SERVICE) and not rollout.rolls_out(tree, "demand-forecast")


class RecordingOpener:
    """Keeps the change it is asked to open (the openers are tested on their own)."""

    def __init__(self) -> None:
        self.changes: list[Change] = []

    def open_or_update(self, change: Change) -> PullRequestResult:
        self.changes.append(change)
        return PullRequestResult(change.branch, f"local:{change.branch}", True, True)


def test_a_step_pull_request_holds_the_manifest_after_the_step(tree, monkeypatch):
    root = tree.parents[2]
    manifest.set_model_version(
        tree, SERVICE, "1", rollout.step_traffic(rollout.policy(SERVICE), "2", 1)
    )
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "base"],
        cwd=root,
        check=True,
    )
    opener = RecordingOpener()
    monkeypatch.setattr(rollout_job, "opener_from_env", lambda: opener)

    url = rollout_job.propose(tree, rollout.plan_advance(tree, SERVICE, "## the analysis"))
    (change,) = opener.changes
    assert url == f"local:{change.branch}" and change.branch == "rollout/fraud-detection/v2-step-2"
    assert change.body.startswith("## the analysis")
    proposed = tree.with_name("proposed.yaml")
    proposed.write_text(change.files["infra/serve/production.yaml"])
    proposed_traffic = manifest.rollouts(proposed)[SERVICE]
    assert proposed_traffic.weight == 10
    assert proposed_traffic.since is None  # the window starts with the merge commit
    assert "rollout" in change.files["infra/k8s/rayservice.yaml"]
    assert manifest.rollouts(tree)[SERVICE].step == 1  # the working tree is unchanged


def test_rollout_status_names_each_rollout_and_its_step(tree):
    from typer.testing import CliRunner

    from mlops.cli import app

    policy = rollout.policy(SERVICE)
    manifest.set_model_version(tree, SERVICE, "1", rollout.step_traffic(policy, "2", 2))
    result = CliRunner().invoke(app, ["rollout", "status", "--manifest", str(tree)])
    assert result.exit_code == 0, result.output
    assert "step 2/3: canary 10% to v2" in result.output
    assert "no rollout" in result.output  # demand-forecast


def test_analyse_needs_a_service_or_all(tree):
    from typer.testing import CliRunner

    from mlops.cli import app

    result = CliRunner().invoke(app, ["rollout", "analyse", "--manifest", str(tree)])
    assert result.exit_code == 1 and "give --service S (repeatable) or --all" in result.output
    result = CliRunner().invoke(app, ["rollout", "analyse", "--all", "--manifest", str(tree)])
    assert result.exit_code == 0 and "no rollout in progress" in result.output
