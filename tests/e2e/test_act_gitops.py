"""release.yml, deploy.yml and monitor.yml run by the real act binary against the real stack.

One copy of the repository (`work`) whose manifest names the versions the session's Ray
cluster serves, pushed to a local bare repository that plays GitHub (`origin`), is shared by
the scenarios, which run in the order of the loop and build on each other:

1. the tag `fraud-detection@v<N>` of a newly registered version releases it: MLflow alias,
   the release commit on origin's main, the endpoint;
2. the tag of a version that fails its gate fails the job and changes nothing; so does one
   whose push to main is refused (a protected remote); one whose new version cannot be
   loaded is released, fails its verify and is undone by a second commit on main;
3. the scheduled monitor, with covariate-drifted traffic in the inference log, opens a
   retrain pull request in local mode and writes its reports;
4. a revert merged on main (the manifest back to the first version) is applied by the deploy
   workflow: cluster, aliases and smoke test;
5. with a rollout policy merged on main, a tag commits the first step (shadow) and the
   scheduled rollout workflow analyses each step and commits the next, up to production;
6. a candidate trained on corrupted labels is started the same way and aborted by the
   scheduled analysis: traffic back on stable, aliases untouched, the reason on the version.

`make act-*` runs in `work` with the session's MLflow server and Ray cluster in its
environment; every act job copies `work` and builds its own environment. Outcomes are read
from act's JSON log, origin, MLflow, the cluster and MLOPS_HOME. The scenarios are meant to
run together, in this order; at the end the session's aliases and served versions are restored.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from mlops.sandbox import copy_repo
from services.inference_log import MODEL_VERSION
from services.registry import PREVIOUS, PRODUCTION
from services.registry_keys import metric_tag
from services.settings import get_settings
from services.spec import load_spec, service_names
from serving.manifest import MODEL_VERSION_KEY, set_model_version
from tests.act import ActLog, use_this_environment
from tests.rollouts import without_rollout_policy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SERVICE = "fraud-detection"
MANIFEST = "infra/serve/production.yaml"
RAYSERVICE = "infra/k8s/rayservice.yaml"
PRIVATE = ("MLOPS_REPO_ROOT", "VIRTUAL_ENV", "GITHUB_TOKEN", "GH_TOKEN")
PROMOTE_STEP = "Release (gates, manifest commit pushed to main, aliases, deploy, verify)"
RELEASE_STEPS = (
    "Parse <service>@v<N>",
    "Start from the tip of main",
    "Set up the locked environment",
    PROMOTE_STEP,
    "Smoke test every application",
)
DRIFTED_ROWS = 1_200


def git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True).stdout


def manifest_versions(text: str) -> dict[str, str | None]:
    doc = yaml.safe_load(text)
    return {
        app["name"]: app["deployments"][0]["user_config"][MODEL_VERSION_KEY]
        for app in doc["applications"]
    }


def health(service: str = SERVICE) -> dict:
    response = httpx.get(f"{get_settings().serve_url}/{service}/health", timeout=10)
    return dict(response.json())


def aliases(client: MlflowClient) -> dict[str, str]:
    return dict(client.get_registered_model(SERVICE).aliases)


@dataclass
class Act:
    """One `make act-*` run: exit code, parsed JSON log, and where the full log is."""

    returncode: int
    log: ActLog
    path: Path
    tail: str

    def context(self) -> str:
        failed = [step for step, result in self.log.results.items() if result == "failure"]
        steps = "".join(f"--- {step}:\n{self.log.text(step)[-3000:]}\n" for step in failed)
        return f"act log: {self.path}\n{steps}{self.tail}"


@dataclass
class GitOps:
    """The shared setup: the working copy, its origin, the stack and the versions in play."""

    work: Path
    origin: Path
    home: Path
    env: dict[str, str]
    client: MlflowClient
    first: str  # the version served when the module starts
    candidate: str  # a newly registered version that passes its gates
    logs: Path

    def origin_main(self) -> str:
        return git(self.origin, "rev-parse", "main").strip()

    def origin_file(self, path: str, ref: str = "main") -> str:
        return git(self.origin, "show", f"{ref}:{path}")

    def make(self, name: str, *args: str, remote: Path | None = None) -> Act:
        path = self.logs / f"{name}.log"
        result = subprocess.run(
            ["make", "-s", *args],
            cwd=self.work,
            env=self.env | ({"GITOPS_REMOTE": str(remote)} if remote else {}),
            capture_output=True,
            text=True,
            timeout=840,
        )
        path.write_text(result.stdout + result.stderr)
        tail = f"{result.stdout[-3000:]}\n{result.stderr[-2000:]}"
        return Act(result.returncode, ActLog(result.stdout), path, tail)


@pytest.fixture(scope="module")
def gitops(served, repo: Path, mlflow_server: str, tmp_path_factory) -> Iterator[GitOps]:
    from serving.deploy import deploy
    from serving.manifest import manifest_path
    from serving.promote import align_aliases
    from training.register import register

    client = MlflowClient(mlflow_server)
    saved = aliases(client)
    # start from git's truth (what `mlops deploy` does): cluster and aliases as the manifest says
    deploy(manifest_path())
    align_aliases(manifest_path())
    first = manifest_versions(manifest_path().read_text())[SERVICE]
    assert first is not None and health()[MODEL_VERSION] == first
    candidate = register(load_spec(SERVICE))["version"]

    tmp = tmp_path_factory.mktemp("act-gitops")
    work = copy_repo(tmp / "work")
    # main starts from what the cluster runs (the session's manifest, and its rendering);
    # releases here serve all traffic at once (rollouts: test_act_rollout.py)
    for relative in (MANIFEST, RAYSERVICE):
        shutil.copy2(repo / relative, work / relative)
    without_rollout_policy(work, SERVICE)
    git(work, "commit", "-q", "--allow-empty", "-am", "Serve the versions deployed on the cluster")
    origin = tmp / "origin.git"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(origin))
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "-q", "origin", "main")
    use_this_environment(work)

    settings = get_settings()
    env = {k: v for k, v in os.environ.items() if k not in PRIVATE and not k.startswith("PYTEST_")}
    env |= {
        "MLOPS_HOME": str(settings.home),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "RAY_ADDRESS": settings.ray_address,
        "MLOPS_DASHBOARD_URL": settings.dashboard_url,
        "MLOPS_SERVE_URL": settings.serve_url,
        "ACT_ARGS": f"--json --action-cache-path {tmp / 'act-cache'}",
        "GITOPS_REMOTE": str(origin),
    }
    logs = tmp / "logs"
    logs.mkdir()
    yield GitOps(work, origin, settings.home, env, client, first, candidate, logs)

    # the session's state as it was: aliases, and the cluster serving the session's manifest
    for alias in (PRODUCTION, PREVIOUS):
        if alias in saved:
            client.set_registered_model_alias(SERVICE, alias, saved[alias])
        elif alias in aliases(client):
            client.delete_registered_model_alias(SERVICE, alias)
    deploy(manifest_path())


def test_tag_push_releases_the_version(gitops: GitOps):
    g, n = gitops, gitops.candidate
    tag = f"{SERVICE}@v{n}"
    before = g.origin_main()
    manifest_before = manifest_versions(g.origin_file(MANIFEST))
    work_head = git(g.work, "rev-parse", "HEAD")

    act = g.make("release", "act-release", f"TAG={tag}")
    assert act.returncode == 0, act.context()
    for step in RELEASE_STEPS:
        assert act.log.results.get(step) == "success", (step, act.log.results, act.context())
    assert "fraud-detection: ok" in act.log.text("Smoke test every application")
    assert f"### Release {SERVICE} v{n}: success" in "".join(act.log.summary)

    # MLflow: production is N, the replaced version is `previous`
    assert g.client.get_model_version_by_alias(SERVICE, PRODUCTION).version == n
    assert g.client.get_model_version_by_alias(SERVICE, PREVIOUS).version == g.first

    # origin's main: one release commit on top of the old tip, changing the manifest to N
    assert git(g.origin, "rev-parse", "main~1").strip() == before
    subject = git(g.origin, "log", "-1", "--format=%s", "main").strip()
    assert subject == f"Release {SERVICE} v{n} to production (tag {tag})"
    author = git(g.origin, "log", "-1", "--format=%an", "main").strip()
    assert author == "github-actions[bot]"
    assert manifest_versions(g.origin_file(MANIFEST)) == manifest_before | {SERVICE: n}
    changed = set(git(g.origin, "diff", "--name-only", before, "main").split())
    assert changed == {MANIFEST, RAYSERVICE}
    # the committed KubeRay rendering names N too (what a Kubernetes deploy would apply)
    rendered = yaml.safe_load(yaml.safe_load(g.origin_file(RAYSERVICE))["spec"]["serveConfigV2"])
    apps = {app["name"]: app for app in rendered["applications"]}
    assert apps[SERVICE]["deployments"][0]["user_config"][MODEL_VERSION_KEY] == n

    # the endpoint serves N
    answer = health()
    assert answer[MODEL_VERSION] == n and answer["ready"], answer

    # act worked on its own copy of `work`
    assert git(g.work, "rev-parse", "HEAD") == work_head
    assert git(g.work, "status", "--porcelain") == ""


def test_tag_of_a_version_failing_its_gate_changes_nothing(gitops: GitOps):
    """The first version again, with its recorded metric below the floor: a refused rollback."""
    g, weak = gitops, gitops.first
    metric = metric_tag(load_spec(SERVICE).evaluation.metric)
    recorded = g.client.get_model_version(SERVICE, weak).tags[metric]
    g.client.set_model_version_tag(SERVICE, weak, metric, "0.5")
    try:
        before = (g.origin_main(), g.origin_file(MANIFEST), aliases(g.client))
        served_before = health()[MODEL_VERSION]
        assert served_before == g.candidate

        act = g.make("release-refused", "act-release", f"TAG={SERVICE}@v{weak}")

        after = (g.origin_main(), g.origin_file(MANIFEST), aliases(g.client))
        served_after = health()[MODEL_VERSION]
    finally:
        g.client.set_model_version_tag(SERVICE, weak, metric, recorded)

    assert act.returncode != 0, act.context()
    assert act.log.results.get("Parse <service>@v<N>") == "success", act.context()
    assert act.log.results.get(PROMOTE_STEP) == "failure", (act.log.results, act.context())
    assert act.log.results.get("Smoke test every application") != "success", act.log.results
    refusal = act.log.text(PROMOTE_STEP)
    assert f"{SERVICE}@v{weak} refused" in refusal and "does not meet the floor" in refusal, refusal
    assert f"### Release {SERVICE} v{weak}: failure" in "".join(act.log.summary)
    assert after == before
    assert served_after == served_before


def protected_copy_of(origin: Path) -> Path:
    """A bare repository with origin's main whose pre-receive hook refuses every push."""
    protected = origin.with_name("protected.git")
    git(origin.parent, "init", "-q", "--bare", "-b", "main", str(protected))
    git(origin, "push", "-q", str(protected), "main")
    hook = protected / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    return protected


def break_booster(g: GitOps, version: str) -> None:
    """Overwrite the stored booster of `version`: it passes its gates but cannot be loaded."""
    uri = g.client.get_model_version_download_uri(SERVICE, version)  # mlflow-artifacts:/...
    stored = g.home / "mlflow" / "artifacts" / uri.split(":", 1)[1].lstrip("/")
    boosters = list(stored.rglob("model.ubj"))
    assert len(boosters) == 1, (uri, boosters)
    boosters[0].write_bytes(b"not an XGBoost model")


def test_a_release_whose_push_is_refused_changes_nothing(gitops: GitOps):
    from training.register import register

    g = gitops
    version = register(load_spec(SERVICE))["version"]  # passes every gate
    protected = protected_copy_of(g.origin)
    before = (git(protected, "rev-parse", "main"), aliases(g.client), health()["model_version"])

    act = g.make(
        "release-refused-push", "act-release", f"TAG={SERVICE}@v{version}", remote=protected
    )

    assert act.returncode != 0, act.context()
    assert act.log.results.get(PROMOTE_STEP) == "failure", (act.log.results, act.context())
    said = act.log.text(PROMOTE_STEP)
    assert "main is protected" in said and "nothing was changed" in said, said
    after = (git(protected, "rev-parse", "main"), aliases(g.client), health()["model_version"])
    assert after == before
    assert f"### Release {SERVICE} v{version}: failure" in "".join(act.log.summary)


def test_a_release_whose_verify_fails_is_undone_by_a_commit_on_main(gitops: GitOps):
    from training.register import register

    g = gitops
    broken = register(load_spec(SERVICE))["version"]
    break_booster(g, broken)
    tip, aliases_before = g.origin_main(), aliases(g.client)
    served = health()["model_version"]
    tag = f"{SERVICE}@v{broken}"

    act = g.make("release-unloadable", "act-release", f"TAG={tag}")

    assert act.returncode != 0, act.context()
    assert act.log.results.get(PROMOTE_STEP) == "failure", (act.log.results, act.context())
    assert f"{tag} failed and was rolled back" in act.log.text(PROMOTE_STEP), act.context()
    # origin's main: the release commit, then the commit that undoes it
    assert git(g.origin, "rev-parse", "main~2").strip() == tip
    subjects = git(g.origin, "log", "-2", "--format=%s", "main").splitlines()
    assert subjects == [
        f"Roll back {SERVICE} to v{served}",
        f"Release {SERVICE} v{broken} to production (tag {tag})",
    ]
    assert manifest_versions(g.origin_file(MANIFEST))[SERVICE] == served
    # git, the aliases and the served version agree again
    assert aliases(g.client) == aliases_before
    answer = health()
    assert answer["model_version"] == served and answer["ready"], answer


def test_scheduled_monitor_opens_a_retrain_pull_request_on_drift(gitops: GitOps):
    from monitoring.backfill import log_traffic

    g, n = gitops, gitops.candidate
    assert g.client.get_model_version_by_alias(SERVICE, PRODUCTION).version == n
    # covariate-drifted traffic, predicted by the production model, with feedback labels
    predict = mlflow.pyfunc.load_model(f"models:/{SERVICE}/{n}").predict
    spec = load_spec(SERVICE)
    log_traffic(
        spec, predict, get_settings().inference_log_uri, n, DRIFTED_ROWS, seed=21, drift="covariate"
    )
    reports = g.home / "monitoring"
    old_reports = set(reports.glob("*/*")) if reports.exists() else set()

    act = g.make("monitor", "act-monitor")
    assert act.returncode == 0, act.context()
    for step in (
        "Use the DVC remote in MLOPS_HOME",
        "Training snapshots (dvc pull, or rebuild the default data)",
        "Monitor and open pull requests",
    ):
        assert act.log.results.get(step) == "success", (step, act.log.results, act.context())

    # one report folder per service from this run; fraud-detection's says retrain
    new = {p.parent.name: p for p in set(reports.glob("*/*")) - old_reports}
    assert set(new) == set(service_names()), new
    for folder in new.values():
        assert (folder / "summary.json").is_file() and (folder / "summary.md").is_file()
    folder = new[SERVICE]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["decision"] == "retrain", summary["reasons"]
    assert summary["production"]["version"] == n
    measured = summary["measured"]
    assert measured["rows"] == DRIFTED_ROWS and measured["labelled_rows"] == DRIFTED_ROWS
    assert measured["feature_drift_share"] >= summary["thresholds"]["feature_drift_share"]
    html = (folder / "report.html").read_text()
    assert "</html>" in html[-2000:].lower() and len(html) > 10_000

    # the pull request, in local mode: record + body under MLOPS_HOME, naming the service
    record_path = g.home / "pull-requests" / f"monitor__{SERVICE}__retrain.json"
    assert record_path.is_file(), sorted((g.home / "pull-requests").glob("*"))
    record = json.loads(record_path.read_text())
    assert record["branch"] == f"monitor/{SERVICE}/retrain" and record["state"] == "open"
    assert record["title"].startswith(f"Retrain {SERVICE}: input drift in")
    assert record["files"] == [f"data/{SERVICE}/snapshot.parquet.dvc"]
    assert summary["pull_request"]["url"] == record["body_path"]
    body = Path(record["body_path"]).read_text()
    assert body.startswith(f"# Retrain {SERVICE}") and f"`{SERVICE}`" in body
    # the new snapshot the pull request points at was pushed to the DVC remote in MLOPS_HOME
    md5 = body.split("new snapshot (md5 `", 1)[1].split("`", 1)[0]
    assert (g.home / "dvc-remote" / "files" / "md5" / md5[:2] / md5[2:]).is_file()

    # the job summary: the monitor's verdict and the files this run wrote
    step_summary = "".join(act.log.summary)
    assert f"Monitor `{SERVICE}`: **retrain**" in step_summary, step_summary
    assert str(folder / "report.html") in step_summary and str(record_path) in step_summary

    # the monitor's run is in MLflow
    run = g.client.get_run(summary["outputs"]["mlflow_run_id"])
    assert run.data.tags["decision"] == "retrain"


def test_deploy_applies_a_reverted_manifest(gitops: GitOps):
    """A revert merged on main (manifest back to the first version) is applied by deploy.yml."""
    g = gitops
    git(g.work, "pull", "-q", "--ff-only", "origin", "main")
    set_model_version(g.work / MANIFEST, SERVICE, g.first)
    git(g.work, "commit", "-qam", f"Revert {SERVICE} to v{g.first}")
    git(g.work, "push", "-q", "origin", "main")
    wanted = manifest_versions(g.origin_file(MANIFEST))
    assert wanted[SERVICE] == g.first and health()[MODEL_VERSION] == g.candidate

    act = g.make("deploy", "act-deploy")
    assert act.returncode == 0, act.context()
    for step in ("Deploy the manifest", "Smoke test every application"):
        assert act.log.results.get(step) == "success", (step, act.log.results, act.context())
    deployed = act.log.text("Deploy the manifest")
    assert f"{SERVICE}: alias production -> v{g.first}" in deployed, deployed
    smoke = act.log.text("Smoke test every application")
    live = {name: version for name, version in wanted.items() if version is not None}
    for name in live:
        assert f"{name}: ok" in smoke, smoke
    assert "FAILED" not in smoke
    head = git(g.work, "rev-parse", "--short", "HEAD").strip()
    assert f"### Deploy of `{MANIFEST}` at {head}: success" in "".join(act.log.summary)

    # the cluster runs the manifest: every application running, serving its version
    from serving.deploy import status

    running = {app.name: app for app in status()}
    assert set(running) == set(live)
    for name, version in live.items():
        assert running[name].status == "RUNNING"
        assert running[name].health[MODEL_VERSION] == version and running[name].health["ready"]
    # git is the truth: the alias follows the manifest
    assert g.client.get_model_version_by_alias(SERVICE, PRODUCTION).version == g.first
    assert g.client.get_model_version_by_alias(SERVICE, PREVIOUS).version == g.candidate


ROLLOUT_STEP = "Analyse and apply (commit and push each step, deploy, verify)"
E2E_POLICY = {
    "steps": [{"mode": "shadow", "weight": 100}, {"mode": "canary", "weight": 50}],
    "min_requests": 200,
    "min_minutes": 0,
}


def release_in_steps(g: GitOps) -> None:
    """On origin's main, fraud-detection gets a two-step rollout policy (a merged change)."""
    git(g.work, "pull", "-q", "--ff-only", "origin", "main")
    spec = g.work / "services" / SERVICE / "service.yaml"
    raw = yaml.safe_load(spec.read_text())
    raw["promotion"]["rollout"] = E2E_POLICY
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    git(g.work, "commit", "-qam", f"{SERVICE} releases in steps")
    git(g.work, "push", "-q", "origin", "main")


def step_traffic(g: GitOps, candidate: str, variant: str, requests: int) -> None:
    """`requests` healthy requests; waits until the candidate's records are flushed."""
    from tests.rollouts import recent, send, wait_for_records

    since = recent(0.05)
    send(SERVICE, requests)
    wait_for_records(SERVICE, candidate, variant, E2E_POLICY["min_requests"], since)


def rollout_on_origin(g: GitOps) -> object:
    """The rollout that origin's main names for the service (None: none)."""
    app = next(
        a for a in yaml.safe_load(g.origin_file(MANIFEST))["applications"] if a["name"] == SERVICE
    )
    return next(d for d in app["deployments"] if d["name"] == "Realtime")["user_config"].get(
        "rollout"
    )


def subject_on_origin(g: GitOps) -> str:
    return git(g.origin, "log", "-1", "--format=%s", "main").strip()


def test_a_tag_rolls_out_in_steps_taken_by_the_scheduled_analysis(gitops: GitOps):
    from training.register import register

    g = gitops
    release_in_steps(g)
    stable = manifest_versions(g.origin_file(MANIFEST))[SERVICE]
    candidate = register(load_spec(SERVICE))["version"]
    tag = f"{SERVICE}@v{candidate}"

    act = g.make("rollout-start", "act-release", f"TAG={tag}")
    assert act.returncode == 0, act.context()
    assert subject_on_origin(g).startswith(f"Start rolling out {SERVICE} v{candidate} (tag {tag})")
    assert rollout_on_origin(g)["mode"] == "shadow"
    assert health()["rollout"]["model_version"] == candidate
    assert aliases(g.client)[PRODUCTION] == stable  # unchanged until completion

    step_traffic(g, candidate, "shadow", 240)
    act = g.make("rollout-advance", "act-rollout")
    assert act.returncode == 0, act.context()
    assert act.log.results.get(ROLLOUT_STEP) == "success", act.context()
    assert subject_on_origin(g).startswith(f"Advance the rollout of {SERVICE} v{candidate}")
    assert "canary 50%" in subject_on_origin(g)
    assert f"Rollout `{SERVICE}` step 1 (shadow, 100%): **advance**" in "".join(act.log.summary)

    step_traffic(g, candidate, "canary", 480)
    act = g.make("rollout-complete", "act-rollout")
    assert act.returncode == 0, act.context()
    assert subject_on_origin(g).startswith(f"Complete the rollout of {SERVICE} v{candidate}")
    assert manifest_versions(g.origin_file(MANIFEST))[SERVICE] == candidate
    assert rollout_on_origin(g) is None
    assert aliases(g.client)[PRODUCTION] == candidate
    assert aliases(g.client)[PREVIOUS] == stable
    answer = health()
    assert answer[MODEL_VERSION] == candidate and "rollout" not in answer, answer


def test_a_candidate_on_corrupted_labels_is_aborted_by_the_scheduled_analysis(
    gitops: GitOps, tmp_path
):
    from services.registry_keys import ROLLOUT_ABORTED_TAG
    from tests.pipeline import train_and_register
    from tests.rollouts import risky_countries_are_fraud

    g = gitops
    stable = manifest_versions(g.origin_file(MANIFEST))[SERVICE]
    production = aliases(g.client)
    tree = copy_repo(tmp_path / "corrupted")
    corrupted = train_and_register(tree, SERVICE, relabel=risky_countries_are_fraud)["version"]

    act = g.make("rollout-start-corrupted", "act-release", f"TAG={SERVICE}@v{corrupted}")
    assert act.returncode == 0, act.context()
    step_traffic(g, corrupted, "shadow", 240)
    act = g.make("rollout-abort", "act-rollout")
    assert act.returncode == 0, act.context()

    assert subject_on_origin(g).startswith(f"Abort the rollout of {SERVICE} v{corrupted}")
    assert "divergence" in git(g.origin, "log", "-1", "--format=%b", "main")
    assert manifest_versions(g.origin_file(MANIFEST))[SERVICE] == stable
    assert rollout_on_origin(g) is None
    assert aliases(g.client) == production
    assert g.client.get_model_version(SERVICE, corrupted).tags[ROLLOUT_ABORTED_TAG]
    assert health()[MODEL_VERSION] == stable and "rollout" not in health()
