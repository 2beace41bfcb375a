"""Invalid service specs, manifests and tags: a clear error, and no file changed.

Every test works in a copy of the catalogue and the serve manifest (MLOPS_REPO_ROOT) and
compares the bytes of every file in that copy before and after.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from mlops.cli import app
from services.settings import PACKAGE_REPO
from services.spec import SpecError, load_catalogue, load_spec, service_names
from serving import manifest
from serving.manifest import ManifestError, manifest_path, set_model_version, versions
from serving.promote import PromotionError, parse_tag, promote

pytestmark = pytest.mark.unit

UNREACHABLE_MLFLOW = "http://127.0.0.1:9"  # anything that reaches the registry fails loudly
PATH_LIKE = [
    "../x",
    "..",
    "../services/fraud-detection",
    "fraud-detection/../fraud-detection",
    "./fraud-detection",
    "/etc/passwd",
    "fraud-detection/",
    "fraud-detection\x00",
    "~",
]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the catalogue and infra/ that the code under test reads and would write."""
    root = tmp_path / "repo"
    for folder in ("services", "infra"):
        shutil.copytree(
            PACKAGE_REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    commit_all(root, "copy")  # git records what runs: a change starts from a commit
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(root))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))  # lock files live outside the copy
    monkeypatch.setenv("MLFLOW_TRACKING_URI", UNREACHABLE_MLFLOW)
    return root


def commit_all(root: Path, message: str) -> None:
    if not (root / ".git").exists():
        git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)


def git(root: Path, *args: str) -> None:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", *identity, *args], cwd=root, check=True, capture_output=True)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the copy (git's own folder aside) and its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def unchanged_after(root: Path, action: Callable[[], Any], error: type[Exception]) -> str:
    """Run `action`, expect `error`, check no file changed; returns the message."""
    before = snapshot(root)
    with pytest.raises(error) as caught:
        action()
    assert snapshot(root) == before
    message = str(caught.value)
    assert message and "Traceback" not in message
    return message


def cli(root: Path, *args: str, one_line: bool = True) -> str:
    """Run the CLI; it must fail with exit code 1 and one error (one line), no file changed."""
    before = snapshot(root)
    result = CliRunner().invoke(app, list(args))
    assert snapshot(root) == before
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("error: ") == 1
    lines = result.stderr.strip().splitlines()
    if one_line:
        assert len(lines) == 1, result.stderr
    return " ".join(lines)


# --- service names and service.yaml -------------------------------------------------------


@pytest.mark.parametrize("name", [*PATH_LIKE, "", "no-such-service", "FRAUD-DETECTION", "x" * 500])
def test_unknown_and_path_like_service_names_are_refused(repo, name):
    message = unchanged_after(repo, lambda: load_spec(name), SpecError)
    assert message.startswith(f"unknown service '{name}'")
    assert "fraud-detection" in message  # lists what is known


BROKEN_SPECS = {
    "not-yaml": ("features: [\n  - {name: a", "not valid YAML"),
    "not-a-mapping": ("- just\n- a list\n", "<root>"),
    "empty": ("", "<root>"),
    "features-not-a-list": (
        "name: broken\ntask: binary\ntarget: y\nfeatures: 3\n"
        "evaluation: {metric: roc_auc, floor: 0.5}\n",
        "features",
    ),
    "unknown-feature-type": (
        "name: broken\ntask: binary\ntarget: y\nfeatures: [{name: a, type: text}]\n"
        "evaluation: {metric: roc_auc, floor: 0.5}\n",
        "features.0.type",
    ),
    "categorical-without-categories": (
        "name: broken\ntask: binary\ntarget: y\nfeatures: [{name: a, type: categorical}]\n"
        "evaluation: {metric: roc_auc, floor: 0.5}\n",
        "feature 'a'",
    ),
    "min-above-max": (
        "name: broken\ntask: binary\ntarget: y\n"
        "features: [{name: a, type: numeric, min: 5, max: 1}]\n"
        "evaluation: {metric: roc_auc, floor: 0.5}\n",
        "'min' (5.0) is greater than 'max' (1.0)",
    ),
    "metric-of-another-task": (
        "name: broken\ntask: binary\ntarget: y\nfeatures: [{name: a, type: numeric}]\n"
        "evaluation: {metric: rmse, floor: 1}\n",
        "evaluation.metric",
    ),
    "unknown-key": (
        "name: broken\ntask: binary\ntarget: y\nfeatures: [{name: a, type: numeric}]\n"
        "evaluation: {metric: roc_auc, floor: 0.5}\nshell: rm -rf /\n",
        "shell",
    ),
    "path-like-name": (
        "name: ../x\ntask: binary\ntarget: y\nfeatures: [{name: a, type: numeric}]\n"
        "evaluation: {metric: roc_auc, floor: 0.5}\n",
        "name",
    ),
    "name-differs-from-folder": (
        "name: other\ntask: binary\ntarget: y\nfeatures: [{name: a, type: numeric}]\n"
        "evaluation: {metric: roc_auc, floor: 0.5}\n",
        "differs from its folder",
    ),
    "path-like-feature": (
        "name: broken\ntask: binary\ntarget: y\nfeatures: [{name: ../a, type: numeric}]\n"
        "evaluation: {metric: roc_auc, floor: 0.5}\n",
        "features.0.name",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_SPECS))
def test_an_invalid_service_yaml_names_the_file_and_the_field(repo, case):
    text, words = BROKEN_SPECS[case]
    spec_file = repo / "services" / "broken" / "service.yaml"
    spec_file.parent.mkdir()
    spec_file.write_text(text)
    message = unchanged_after(repo, lambda: load_spec("broken"), SpecError)
    assert str(spec_file) in message and words in message
    assert unchanged_after(repo, load_catalogue, SpecError) == message
    load_spec("fraud-detection")  # the rest of the catalogue still loads


def test_promoting_a_service_with_an_invalid_spec_is_a_clean_cli_error(repo):
    (repo / "services" / "broken").mkdir()
    (repo / "services" / "broken" / "service.yaml").write_text("features: [\n")
    text = cli(repo, "promote", "broken@v1", one_line=False)  # PyYAML's message spans lines
    assert "broken/service.yaml: not valid YAML" in text


# --- the manifest ---------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["../x", "..", "prod/../../x", "/etc/passwd", "", "Prod", "a b"])
def test_path_like_environment_names_are_refused(repo, env):
    message = unchanged_after(repo, lambda: manifest_path(env), ManifestError)
    assert "invalid environment name" in message


@pytest.mark.parametrize(
    "version", ["0", "-1", "1.5", "v1", "../1", "1/../2", "1; rm -rf /", "1234567890", "", " 1"]
)
def test_set_model_version_refuses_what_is_not_a_version(repo, version):
    path = manifest_path()
    message = unchanged_after(
        repo, lambda: set_model_version(path, "fraud-detection", version), ManifestError
    )
    assert f"'{version}' is not a version number" in message


@pytest.mark.parametrize("service", [*PATH_LIKE, "no-such-service"])
def test_set_model_version_refuses_unknown_and_path_like_services(repo, service):
    path = manifest_path()
    message = unchanged_after(repo, lambda: set_model_version(path, service, "3"), ManifestError)
    assert f"no application for service '{service}'" in message


def test_a_missing_manifest_is_a_manifest_error(repo):
    missing = repo / "infra" / "serve" / "staging.yaml"
    message = unchanged_after(repo, lambda: versions(missing), ManifestError)
    assert "manifest not found" in message
    assert not missing.exists()


BROKEN_MANIFESTS: dict[str, tuple[Callable[[str], str], str]] = {
    "not-yaml": (lambda t: t + "\n  - : [\n", "not valid YAML"),
    "not-a-mapping": (lambda t: "- a\n- b\n", "'applications' must be a list"),
    "no-applications": (
        lambda t: t.replace("applications:", "apps:"),
        "'applications' must be a list",
    ),
    "unknown-service": (
        lambda t: t.replace("- name: demand-forecast", "- name: no-such-service"),
        "unknown service 'no-such-service'",
    ),
    "path-like-service": (
        lambda t: t.replace("- name: demand-forecast", "- name: ../x"),
        "unknown service '../x'",
    ),
    "route-prefix": (
        lambda t: t.replace("route_prefix: /demand-forecast", "route_prefix: /../admin"),
        "route_prefix: must be '/demand-forecast'",
    ),
    "import-path": (
        lambda t: t.replace("import_path: serving.app:build_app", "import_path: os:system", 1),
        "import_path: must be 'serving.app:build_app'",
    ),
    "missing-deployment": (
        lambda t: t.replace("- name: Batch", "- name: Other", 1),
        "deployments: must be",
    ),
    "path-like-version": (
        lambda t: t.replace("model_version: null", "model_version: ../1"),
        "model_version '../1' is not a version number",
    ),
    "versions-disagree": (
        lambda t: t.replace("model_version: null", "model_version: 2", 1),
        "deployments disagree on model_version",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_MANIFESTS))
def test_an_invalid_manifest_is_refused_and_left_as_it_is(repo, case):
    mutate, words = BROKEN_MANIFESTS[case]
    path = manifest_path()
    original = path.read_text()
    assert "model_version: null" in original  # the mutations rely on the committed layout
    path.write_text(mutate(original))
    for action in (
        lambda: manifest.load(path),
        lambda: versions(path),
        lambda: set_model_version(path, "fraud-detection", "1"),
    ):
        message = unchanged_after(repo, action, ManifestError)
        assert str(path) in message and words in message
    # merged on main, it is refused before any cluster call; the YAML parser's own message
    # spans several lines
    commit_all(repo, f"broken manifest: {case}")
    text = cli(repo, "deploy", "--manifest", str(path), one_line=case != "not-yaml")
    assert words.rstrip("'") in text  # the CLI strips a trailing quote


# --- tags -----------------------------------------------------------------------------------

BAD_TAGS = [
    "",
    "fraud-detection",
    "fraud-detection@",
    "fraud-detection@1",
    "fraud-detection@v",
    "fraud-detection@v0",
    "fraud-detection@v01",
    "fraud-detection@v-1",
    "fraud-detection@vlatest",
    "fraud-detection@v1.5",
    "fraud-detection@v1234567890",
    "fraud-detection@v1@v2",
    "fraud-detection@v1;rm -rf /",
    "fraud-detection@v1\nother@v2",
    "Fraud-Detection@v1",
    "refs/tags/fraud-detection@v1",
    *[f"{name}@v1" for name in PATH_LIKE],
]


@pytest.mark.parametrize("tag", BAD_TAGS)
def test_malformed_and_path_like_tags_are_refused_with_the_expected_form(repo, tag):
    message = unchanged_after(repo, lambda: parse_tag(tag), PromotionError)
    assert message == f"invalid tag '{tag}': expected <service>@v<N>, e.g. fraud-detection@v3"


def test_a_well_formed_tag_of_an_unknown_service_is_refused(repo):
    message = unchanged_after(repo, lambda: parse_tag("no-such-service@v1"), PromotionError)
    assert message.startswith("unknown service 'no-such-service'")


@pytest.mark.parametrize("tag", ["../x@v1", "fraud-detection@v0", "no-such-service@v1"])
def test_promote_refuses_bad_tags_before_touching_the_registry(repo, tag):
    # MLFLOW_TRACKING_URI is unreachable: reaching the registry would raise RegistryUnavailable
    message = unchanged_after(repo, lambda: promote(tag, do_deploy=False), PromotionError)
    assert tag in message or "unknown service" in message


@pytest.mark.parametrize("tag", ["../x@v1", "../../etc/passwd@v1", "fraud-detection@v0", "x@v1"])
def test_cli_promote_of_a_bad_tag_is_one_line_without_traceback(repo, tag):
    line = cli(repo, "promote", tag)
    assert tag in line or "unknown service" in line


@pytest.fixture
def sqlite_registry(repo, tmp_path, monkeypatch) -> MlflowClient:
    """A file-backed registry (no server) holding the service with no version 999."""
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("fraud-detection")
    return client


def test_promoting_a_version_that_does_not_exist_changes_nothing(repo, sqlite_registry):
    message = unchanged_after(
        repo, lambda: promote("fraud-detection@v999", do_deploy=False), PromotionError
    )
    assert message == "fraud-detection@v999 refused: fraud-detection has no registered version 999"
    line = cli(repo, "promote", "fraud-detection@v999", "--no-deploy")
    assert "has no registered version 999" in line
    assert sqlite_registry.get_registered_model("fraud-detection").aliases == {}
    assert versions(manifest_path())["fraud-detection"] is None
    assert set(service_names()) == {"fraud-detection", "demand-forecast"}
