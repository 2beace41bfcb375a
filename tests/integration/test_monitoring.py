"""The monitor against real Evidently and a real MLflow server (the session's registered models).

Traffic is written to a private inference log with the production model's own predictions.
Aliases and versions this module changes are restored afterwards.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
import yaml
from mlflow import MlflowClient
from sklearn.metrics import f1_score, roc_auc_score

from monitoring.backfill import log_traffic
from monitoring.monitor import MonitorOptions, monitor_service
from monitoring.production import mark_promoted
from monitoring.pull_requests import LocalOpener
from services.datagen import generate
from services.encoding import FeatureEncoder
from services.inference_log import PREDICTION, PROBABILITY
from services.model import ServiceModel, signature_from_spec
from services.registry import PREVIOUS, PRODUCTION
from services.registry_keys import (
    BOOSTER_ARTIFACT,
    MODEL_ARTIFACT,
    REFERENCE_ARTIFACT,
    SPEC_ARTIFACT,
    metric_tag,
)
from services.spec import SPEC_FILE, load_spec
from serving.manifest import MODEL_VERSION_KEY, manifest_path, versions
from tests.conftest import name_on_main
from training.train import frame_matrix

pytestmark = pytest.mark.integration
SERVICE = "fraud-detection"
ROWS = 1_200


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def client(registered, mlflow_server):
    """A client; the fraud-detection aliases and the manifest on main as they were are
    restored at the end."""
    client = MlflowClient(mlflow_server)
    saved = dict(client.get_registered_model(SERVICE).aliases)
    on_main = versions(manifest_path())
    yield client
    for service, version in on_main.items():
        name_on_main(service, version)
    for alias in (PRODUCTION, PREVIOUS):
        if alias in saved:
            client.set_registered_model_alias(SERVICE, alias, saved[alias])
        elif alias in client.get_registered_model(SERVICE).aliases:
            client.delete_registered_model_alias(SERVICE, alias)


@pytest.fixture(scope="module")
def good(client, registered):
    """Version 1 (trained by the pipeline) and its pyfunc."""
    version = registered[SERVICE]
    return version, mlflow.pyfunc.load_model(f"models:/{SERVICE}/{version}").predict


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A private MLOPS_HOME and inference log per test."""
    home, log_uri = tmp_path / "home", str(tmp_path / "inference-log")
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("MLOPS_INFERENCE_LOG_URI", log_uri)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return home, log_uri


@pytest.fixture
def production_v1(client, good):
    version, _ = good
    name_on_main(SERVICE, version)
    client.set_registered_model_alias(SERVICE, PRODUCTION, version)
    if PREVIOUS in client.get_registered_model(SERVICE).aliases:
        client.delete_registered_model_alias(SERVICE, PREVIOUS)
    mark_promoted(client, SERVICE, version, datetime.now(UTC) - timedelta(hours=200))
    return version


def run(open_pr: bool = False, opener=None):
    return monitor_service(SERVICE, MonitorOptions(open_pr=open_pr, opener=opener))


def assert_outputs(result, decision: str) -> dict:
    assert result.action == decision
    html = result.report_html.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:500].lower()
    assert "</html>" in html[-2000:].lower() and len(html) > 10_000
    summary = json.loads(result.summary_json.read_text())
    assert summary["decision"] == decision and summary["reasons"]
    assert summary["thresholds"]["feature_drift_share"] == 0.3
    assert f"**{decision}**" in result.summary_md.read_text()
    assert result.output_dir.parent.parent.name == "monitoring"
    return summary


def test_healthy_traffic_needs_nothing(env, production_v1, good, client):
    _, log_uri = env
    version, predict = good
    log_traffic(load_spec(SERVICE), predict, log_uri, version, ROWS, seed=11)

    result = run()
    summary = assert_outputs(result, "none")
    assert summary["production"]["alias_disagrees"] is None
    assert summary["measured"]["rows"] == ROWS and summary["measured"]["labelled_rows"] == ROWS
    assert summary["measured"]["feature_drift_share"] < 0.3
    assert len(summary["columns"]) == 13 and not any(c["drifted"] for c in summary["columns"])
    assert summary["prediction_drift"]["column"] == PROBABILITY
    assert summary["prediction_drift"]["score"] < 0.1
    assert summary["measured"]["live_metrics"]["roc_auc"] > 0.8
    run_data = client.get_run(result.mlflow_run_id)
    assert run_data.data.metrics["rows"] == ROWS
    assert run_data.data.tags["decision"] == "none"
    assert client.get_experiment(run_data.info.experiment_id).name == f"{SERVICE}-monitoring"
    artifacts = {a.path for a in client.list_artifacts(result.mlflow_run_id)}
    assert {"report.html", "summary.json", "summary.md"} <= artifacts


def test_the_manifest_on_main_names_the_measured_version_whatever_the_alias_says(
    env, production_v1, good, client
):
    _, log_uri = env
    version, predict = good
    log_traffic(load_spec(SERVICE), predict, log_uri, version, ROWS, seed=19)
    client.delete_registered_model_alias(SERVICE, PRODUCTION)  # e.g. moved by hand
    try:
        summary = assert_outputs(run(), "none")
    finally:
        client.set_registered_model_alias(SERVICE, PRODUCTION, version)
    assert summary["production"]["version"] == version
    assert summary["production"]["source"] == "the manifest on main"
    note = summary["production"]["alias_disagrees"]
    assert "alias names no version" in note and f"manifest on main names v{version}" in note
    assert summary["measured"]["rows"] == ROWS


def test_covariate_drift_retrains(env, production_v1, good, monkeypatch, tmp_path):
    _, log_uri = env
    version, predict = good
    log_traffic(load_spec(SERVICE), predict, log_uri, version, ROWS, seed=12, drift="covariate")
    step_summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))

    result = run()
    summary = assert_outputs(result, "retrain")
    assert summary["measured"]["feature_drift_share"] >= 0.3
    drifted = {c["column"] for c in summary["columns"] if c["drifted"]}
    assert {"amount", "account_age_days", "txn_count_24h"} <= drifted
    assert "features drifted" in summary["reasons"][0]
    assert summary["pull_request"] is None  # --open-pr not given
    assert "Monitor `fraud-detection`: **retrain**" in step_summary.read_text()


def test_concept_drift_is_noted_but_opens_nothing(env, production_v1, good):
    _, log_uri = env
    version, predict = good
    log_traffic(load_spec(SERVICE), predict, log_uri, version, ROWS, seed=13, drift="concept")

    result = run()
    summary = assert_outputs(result, "none")
    perf = summary["measured"]["performance"]
    assert perf["live"] < perf["registered"] - 0.05
    assert summary["notes"] and "concept drift" in summary["notes"][0]


def test_too_few_rows_is_reported_not_an_error(env, production_v1, good):
    _, log_uri = env
    version, predict = good
    log_traffic(load_spec(SERVICE), predict, log_uri, version, 50, seed=14)

    result = run(open_pr=True)
    assert result.action == "insufficient-data" and result.report_html is None
    summary = json.loads(result.summary_json.read_text())
    assert summary["measured"]["rows"] == 50 and "fewer than min_rows 500" in summary["reasons"][0]
    assert summary["pull_request"] is None and summary["pull_request_note"].startswith("none")


def _register_bad_version(client: MlflowClient, tmp: Path) -> str:
    """A model trained on concept-drifted data: on today's traffic it ranks fraud backwards."""
    spec = load_spec(SERVICE)
    data = generate(spec, 6_000, seed=99, drift="concept")
    encoder = FeatureEncoder(spec)
    train, test = data.iloc[:5_000], data.iloc[5_000:].reset_index(drop=True)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3},
        frame_matrix(spec, train),
        num_boost_round=30,
    )
    booster_path = tmp / "model.ubj"
    booster.save_model(booster_path)
    raw = booster.inplace_predict(encoder.encode_frame(test))
    metrics = {
        "roc_auc": roc_auc_score(test[spec.target], raw),
        "f1": f1_score(test[spec.target], (raw >= 0.5).astype(int)),
    }
    reference = train.head(2_000).reset_index(drop=True)
    ref_raw = booster.inplace_predict(encoder.encode_frame(reference))
    reference = reference.assign(**{PREDICTION: (ref_raw >= 0.5).astype(int), PROBABILITY: ref_raw})
    reference_path = tmp / Path(REFERENCE_ARTIFACT).name
    reference.to_parquet(reference_path)
    mlflow.set_experiment(SERVICE)
    with mlflow.start_run(run_name="deliberately-bad"):
        mlflow.log_artifact(str(reference_path), Path(REFERENCE_ARTIFACT).parent.as_posix())
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=ServiceModel(),
            artifacts={
                BOOSTER_ARTIFACT: str(booster_path),
                SPEC_ARTIFACT: str(spec.folder / SPEC_FILE),
            },
            signature=signature_from_spec(spec),
            pip_requirements=["mlflow", "xgboost"],
            registered_model_name=SERVICE,
        )
    version = str(info.registered_model_version)
    for name, value in metrics.items():
        client.set_model_version_tag(SERVICE, version, metric_tag(name), str(value))
    return version


@pytest.fixture
def bad_in_production(client, good, repo):
    good_version, _ = good
    with tempfile.TemporaryDirectory() as tmp:
        bad = _register_bad_version(client, Path(tmp))
    client.set_registered_model_alias(SERVICE, PREVIOUS, good_version)
    name_on_main(SERVICE, bad)
    client.set_registered_model_alias(SERVICE, PRODUCTION, bad)
    mark_promoted(client, SERVICE, bad, datetime.now(UTC) - timedelta(hours=1))
    yield bad, mlflow.pyfunc.load_model(f"models:/{SERVICE}/{bad}").predict
    name_on_main(SERVICE, good_version)
    client.set_registered_model_alias(SERVICE, PRODUCTION, good_version)
    client.delete_registered_model_alias(SERVICE, PREVIOUS)
    client.delete_model_version(SERVICE, bad)
    subprocess.run(["git", "branch", "-D", f"monitor/{SERVICE}/revert"], cwd=repo, check=False)


def test_bad_version_on_healthy_traffic_proposes_the_revert(env, bad_in_production, good, repo):
    home, log_uri = env
    bad, predict = bad_in_production
    good_version, _ = good
    log_traffic(load_spec(SERVICE), predict, log_uri, bad, ROWS, seed=15)
    head, status = git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")

    result = run(open_pr=True, opener=LocalOpener(repo=repo, records=home / "pull-requests"))
    summary = assert_outputs(result, "revert")
    assert summary["measured"]["feature_drift_share"] < 0.3
    assert summary["production"] == {
        **summary["production"],
        "version": bad,
        "previous_version": good_version,
        "promoted_at_source": "tag",
    }
    assert any(f"worse than previous v{good_version}" in r for r in summary["reasons"])

    record = json.loads((home / "pull-requests" / f"monitor__{SERVICE}__revert.json").read_text())
    assert record["branch"] == f"monitor/{SERVICE}/revert"
    assert summary["pull_request"]["url"] == record["body_path"]
    manifest = git(repo, "show", f"monitor/{SERVICE}/revert:infra/serve/production.yaml")
    app = next(a for a in yaml.safe_load(manifest)["applications"] if a["name"] == SERVICE)
    assert {d["user_config"][MODEL_VERSION_KEY] for d in app["deployments"]} == {good_version}
    rayservice = git(repo, "show", f"monitor/{SERVICE}/revert:infra/k8s/rayservice.yaml")
    serve_config = yaml.safe_load(yaml.safe_load(rayservice)["spec"]["serveConfigV2"])
    served = next(a for a in serve_config["applications"] if a["name"] == SERVICE)
    assert {d["user_config"][MODEL_VERSION_KEY] for d in served["deployments"]} == {good_version}
    assert "rendered from infra/serve/production.yaml" in rayservice
    assert "Revert fraud-detection" in Path(record["body_path"]).read_text()
    assert (git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")) == (head, status)
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"


@pytest.fixture
def retrain_branch_cleanup(repo):
    yield f"monitor/{SERVICE}/retrain"
    subprocess.run(["git", "branch", "-D", f"monitor/{SERVICE}/retrain"], cwd=repo, check=False)


def test_drift_twice_gives_exactly_one_retrain_pull_request(
    env, production_v1, good, repo, retrain_branch_cleanup
):
    home, log_uri = env
    version, predict = good
    branch = retrain_branch_cleanup
    log_traffic(load_spec(SERVICE), predict, log_uri, version, ROWS, seed=16, drift="covariate")
    head, status = git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")
    opener = LocalOpener(repo=repo, records=home / "pull-requests")

    first = run(open_pr=True, opener=opener)
    second = run(open_pr=True, opener=opener)

    assert first.action == second.action == "retrain"
    assert first.pull_request.created and not second.pull_request.created
    assert not second.pull_request.committed  # same window, same snapshot: no new commit
    records = sorted(p.name for p in (home / "pull-requests").iterdir())
    assert records == [f"monitor__{SERVICE}__retrain.json", f"monitor__{SERVICE}__retrain.md"]
    assert git(repo, "rev-list", "--count", f"main..{branch}") == "1"
    assert git(repo, "branch", "--list", "monitor/*").split() == [branch]
    assert worktrees_clean(repo)

    pointer = git(repo, "show", f"{branch}:data/{SERVICE}/snapshot.parquet.dvc")
    md5 = yaml.safe_load(pointer)["outs"][0]["md5"]
    assert (
        md5
        != yaml.safe_load((repo / f"data/{SERVICE}/snapshot.parquet.dvc").read_text())["outs"][0][
            "md5"
        ]
    )
    assert (repo / ".mlops" / "dvc-remote" / "files" / "md5" / md5[:2] / md5[2:]).is_file()
    pushed = pd.read_parquet(repo / ".mlops" / "dvc-remote" / "files" / "md5" / md5[:2] / md5[2:])
    previous = pd.read_parquet(repo / f"data/{SERVICE}/snapshot.parquet")
    assert len(previous) < len(pushed) <= len(previous) + ROWS
    assert list(pushed.columns) == list(previous.columns)
    assert np.isin(pushed["is_fraud"].unique(), [0, 1]).all()
    body = Path(first.pull_request.url).read_text()
    assert "| amount |" in body and "labelled production rows" in body
    assert (git(repo, "rev-parse", "HEAD"), git(repo, "status", "--porcelain")) == (head, status)


def worktrees_clean(repo: Path) -> bool:
    return len(git(repo, "worktree", "list").splitlines()) == 1


def test_cli_prints_the_decision_and_exits_zero(env, production_v1, good):
    from typer.testing import CliRunner

    from mlops.cli import app

    home, log_uri = env
    version, predict = good
    log_traffic(load_spec(SERVICE), predict, log_uri, version, ROWS, seed=17, drift="covariate")

    result = CliRunner().invoke(app, ["monitor", "--service", SERVICE, "--since", "2h"])
    assert result.exit_code == 0, result.output
    assert "retrain" in result.output and "feature drift share" in result.output
    (run_dir,) = (home / "monitoring" / SERVICE).iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["decision"] == "retrain"


def test_cli_rejects_bad_arguments(env):
    from typer.testing import CliRunner

    from mlops.cli import app

    neither = CliRunner().invoke(app, ["monitor"])
    assert neither.exit_code == 1 and "--service" in neither.output
    bad_since = CliRunner().invoke(app, ["monitor", "--all", "--since", "yesterday"])
    assert bad_since.exit_code == 1 and "expected a duration" in bad_since.output


@pytest.fixture
def demand_in_production(registered, mlflow_server):
    name = "demand-forecast"
    client = MlflowClient(mlflow_server)
    saved = client.get_registered_model(name).aliases.get(PRODUCTION)
    version = registered[name]
    on_main = versions(manifest_path())[name]
    name_on_main(name, version)
    client.set_registered_model_alias(name, PRODUCTION, version)
    mark_promoted(client, name, version, datetime.now(UTC) - timedelta(hours=1))
    yield name, version, mlflow.pyfunc.load_model(f"models:/{name}/{version}").predict
    name_on_main(name, on_main)
    if saved is None:
        client.delete_registered_model_alias(name, PRODUCTION)
    else:
        client.set_registered_model_alias(name, PRODUCTION, saved)


def test_regression_service_reports_rmse_and_prediction_drift(env, demand_in_production):
    _, log_uri = env
    name, version, predict = demand_in_production
    spec = load_spec(name)
    log_traffic(spec, predict, log_uri, version, ROWS, seed=18)

    result = monitor_service(name)
    summary = assert_outputs(result, "none")
    live = summary["measured"]["live_metrics"]
    assert {"rmse", "mae", "r2"} <= set(live)
    perf = summary["measured"]["performance"]
    assert perf["metric"] == "rmse" and perf["higher_is_better"] is False
    assert abs(perf["live"] - perf["registered"]) < spec.monitoring.performance_margin
    assert summary["prediction_drift"]["column"] == PREDICTION
    assert any("no previous version" in r for r in summary["reasons"])
