"""The rollout analysis around the gates: the step window read from an inference log, its JSON,
markdown, files and MLflow run (monitoring.rollout_analysis)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from monitoring import rollout_analysis as ra
from monitoring.rollout_result import RolloutDecision, Verdict
from services.inference_log import (
    FEEDBACK_KIND,
    LABEL,
    PREDICTION,
    PREDICTIONS_KIND,
    PROBABILITY,
    REQUEST_ID,
    REQUESTS_KIND,
    SERVICE,
    SHADOW,
    STABLE,
    TIMESTAMP,
    write_part,
)
from tests.constructed import NOW, request_records, traffic, with_rollout
from tests.constructed import judged_step as judge

pytestmark = pytest.mark.unit

GATES = ["errors", "latency", "divergence", "quality"]


def test_the_json_and_markdown_name_every_gate_and_the_decision():
    analysis = judge(candidate_errors=20)
    data = ra.to_json(analysis)
    assert json.loads(json.dumps(data)) == data
    assert data["decision"] == "abort"
    assert data["evidence"]["name"] == "evidence"
    assert [g["name"] for g in data["gates"]] == GATES
    assert data["gates"][0]["verdict"] == "fail"
    assert data["gates"][0]["figures"]["candidate_server_errors"] == 20
    assert data["since"] == "2026-06-01T11:30:00+00:00"
    text = ra.markdown(analysis)
    assert text.startswith("## Rollout `fraud-detection` step 1 (canary, 10%): **abort**\n")
    assert "Candidate v3 against stable v2" in text
    for name in ["evidence", *GATES]:
        assert f"\n| {name} | " in text
    assert "| errors | fail | candidate 5xx 20/400 = 5.00%" in text
    assert "mean \\|difference\\|" in text  # a pipe in a figure does not split the table
    assert f"- {analysis.reasons[0]}" in text


def test_saved_files_go_to_a_fresh_folder_under_rollouts(tmp_path):
    analysis = judge()
    folder = ra.report_dir(tmp_path, analysis)
    assert folder == tmp_path / "rollouts" / "fraud-detection" / "20260601T120000Z"
    assert ra.report_dir(tmp_path, analysis).name == "20260601T120000Z-2"
    files = ra.save(analysis, folder)
    assert [f.name for f in files] == ["rollout-analysis.json", "rollout-analysis.md"]
    assert json.loads(files[0].read_text())["decision"] == "advance"
    assert files[1].read_text() == ra.markdown(analysis)


class RecordingClient:
    """The MlflowClient calls a rollout run makes, recorded."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.params: dict[str, object] = {}
        self.tags: dict[str, str] = {}
        self.artifacts: list[str] = []
        self.experiments: list[str] = []
        self.status = ""

    def get_experiment_by_name(self, name: str) -> None:
        return None

    def create_experiment(self, name: str) -> str:
        self.experiments.append(name)
        return "7"

    def create_run(self, experiment_id: str, run_name: str) -> SimpleNamespace:
        self.run_name = run_name
        return SimpleNamespace(info=SimpleNamespace(run_id="run-1"))

    def log_metric(self, run_id: str, key: str, value: float) -> None:
        self.metrics[key] = value

    def log_param(self, run_id: str, key: str, value: object) -> None:
        self.params[key] = value

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.tags[key] = value

    def log_artifact(self, run_id: str, path: str) -> None:
        self.artifacts.append(path)

    def set_terminated(self, run_id: str, status: str) -> None:
        self.status = status


def test_the_mlflow_run_holds_figures_versions_decision_and_files(tmp_path):
    analysis = judge(candidate_errors=20)
    files = ra.save(analysis, tmp_path)
    client = RecordingClient()
    assert ra.log_to_mlflow(client, analysis, files) == "run-1"  # type: ignore[arg-type]
    assert client.experiments == ["rollouts-fraud-detection"]
    assert client.metrics["errors.candidate_rate"] == pytest.approx(0.05)
    assert client.metrics["evidence.candidate_requests"] == 400
    assert client.metrics["latency.order_statistic"] == 373  # of the 380 answered
    assert client.params["rollout.weight"] == 10 and client.params["rollout.step"] == 1
    assert client.params["rollout.threshold.errors"].startswith("5xx rate <= 0.50%: min(SLO 1.00%")
    assert client.tags["rollout.decision"] == "abort"
    assert (client.tags["rollout.stable_version"], client.tags["rollout.candidate_version"]) == (
        "2",
        "3",
    )
    assert client.tags["rollout.verdict.errors"] == "fail"
    assert client.artifacts == [str(f) for f in files] and client.status == "FINISHED"


def write_shadow_step(uri: str, since: datetime) -> None:
    """300 stable requests of one row, each shadowed by v3 (same request and row ids), 10
    shadow scorings that failed, 250 labels, and stable rows from before the step."""
    when = since + timedelta(minutes=20)
    probability = np.random.default_rng(4).beta(1, 9, 300)
    labels = (np.random.default_rng(5).random(300) < probability).astype(float)
    requests = [f"q{i}" for i in range(300)]
    ids = [f"q{i}-0" for i in range(300)]
    latency = np.full(300, 5.0)
    outputs = {
        REQUEST_ID: ids,
        PREDICTION: (probability >= 0.5).astype(int),
        PROBABILITY: probability,
    }
    for version, variant in (("2", STABLE), ("3", SHADOW)):
        rows = request_records(version, variant, latency, ids=requests).assign(**outputs)
        write_part(uri, "fraud-detection", PREDICTIONS_KIND, rows.assign(**{TIMESTAMP: when}), "w")
    early = request_records("2", STABLE, latency[:5], ids=[f"old{i}" for i in range(5)])
    early = early.assign(
        **{REQUEST_ID: [f"old{i}-0" for i in range(5)], TIMESTAMP: since - timedelta(hours=1)}
    )
    write_part(uri, "fraud-detection", PREDICTIONS_KIND, early, "w")
    failed = request_records("3", SHADOW, np.full(10, 2.0), 10, ids=requests[:10])
    write_part(uri, "fraud-detection", REQUESTS_KIND, failed.assign(**{TIMESTAMP: when}), "w")
    feedback = pd.DataFrame(
        {REQUEST_ID: ids[:250], TIMESTAMP: when, SERVICE: "fraud-detection", LABEL: labels[:250]}
    )
    write_part(uri, "fraud-detection", FEEDBACK_KIND, feedback, "w")


def test_analyse_reads_the_step_window_with_shadow_rows_and_labels(tmp_path, monkeypatch):
    monkeypatch.setattr(ra, "load_spec", lambda name: with_rollout(name))
    uri = str(tmp_path / "log")
    since = NOW - timedelta(minutes=30)
    write_shadow_step(uri, since)
    analysis = ra.analyse("fraud-detection", traffic(SHADOW, since), "2", uri, now=NOW)
    assert analysis.evidence.figures["candidate_requests"] == 310  # 300 answered + 10 failed
    assert analysis.evidence.figures["stable_requests"] == 300  # the early 5 are outside
    assert analysis.gate("errors").figures["candidate_server_errors"] == 10
    divergence = analysis.gate("divergence")
    assert divergence.figures["candidate_rows"] == divergence.figures["stable_rows"] == 300
    assert divergence.figures["difference"] == 0.0  # the same scores on the same rows
    quality = analysis.gate("quality")
    assert quality.figures["candidate_labels"] == quality.figures["stable_labels"] == 250
    assert quality.verdict is Verdict.PASS
    assert analysis.gate("errors").verdict is Verdict.FAIL  # 10/310 shadow failures
    assert analysis.decision is RolloutDecision.ABORT


def test_without_a_start_the_step_began_with_the_last_manifest_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(ra, "load_spec", lambda name: with_rollout(name))
    repo = tmp_path / "repo"
    manifest = repo / "infra" / "serve" / "production.yaml"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("applications: []\n")
    (repo / "README.md").write_text("later\n")
    stamp = "2026-06-01T11:40:00+00:00"
    env = {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp, "HOME": str(tmp_path)}
    run = {"cwd": repo, "check": True, "capture_output": True, "env": env}
    subprocess.run(["git", "init", "-q"], **run)
    subprocess.run(["git", "-c", "user.email=a@b", "-c", "user.name=a", "add", "."], **run)
    subprocess.run(
        ["git", "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "step"], **run
    )
    assert ra.step_start(manifest) == datetime(2026, 6, 1, 11, 40, tzinfo=UTC)
    analysis = ra.analyse(
        "fraud-detection", traffic(since=None), "2", str(tmp_path / "log"), NOW, manifest
    )
    assert analysis.since == datetime(2026, 6, 1, 11, 40, tzinfo=UTC)
    assert analysis.decision is RolloutDecision.HOLD  # an empty log: no candidate requests
    assert analysis.evidence.figures["minutes"] == pytest.approx(20.0)


def test_a_step_merged_from_a_pull_request_starts_at_the_merge(tmp_path):
    repo = tmp_path / "repo"
    manifest = repo / "infra" / "serve" / "production.yaml"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("applications: []\n")

    def git(*args: str, at: str) -> None:
        env = {"GIT_AUTHOR_DATE": at, "GIT_COMMITTER_DATE": at, "HOME": str(tmp_path)}
        command = ["git", "-c", "user.email=a@b", "-c", "user.name=a", *args]
        subprocess.run(command, cwd=repo, check=True, capture_output=True, env=env)

    git("init", "-q", "-b", "main", at="2026-06-01T08:00:00+00:00")
    git("add", ".", at="2026-06-01T08:00:00+00:00")
    git("commit", "-qm", "base", at="2026-06-01T08:00:00+00:00")
    git("checkout", "-qb", "rollout/step-2", at="2026-06-01T09:00:00+00:00")
    manifest.write_text("applications: [] # step 2\n")
    git("commit", "-qam", "the step, proposed", at="2026-06-01T09:00:00+00:00")
    git("checkout", "-q", "main", at="2026-06-01T11:00:00+00:00")
    git("merge", "-q", "--no-ff", "-m", "merge", "rollout/step-2", at="2026-06-01T11:00:00+00:00")
    assert ra.step_start(manifest) == datetime(2026, 6, 1, 11, 0, tzinfo=UTC)
