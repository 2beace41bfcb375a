"""serving.image and infra/k8s/Dockerfile: what the serving image holds and the tag it gets.

There may be no Docker daemon where the tests run: the Dockerfile is checked by reading it.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from serving.image import (
    DOCKERFILE,
    DOCKERIGNORE,
    TAG_PATTERN,
    ImageError,
    copied_sources,
    image_reference,
    image_tag,
)
from serving.k8s import render
from serving.manifest import manifest_path

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def git(cwd: Path, *args: str) -> None:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True)


def dockerfile() -> str:
    return (ROOT / DOCKERFILE).read_text()


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile())
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split()[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


# --- the tag ---------------------------------------------------------------------------------


def test_copied_sources_are_read_from_shell_form_copy_instructions():
    text = (
        "FROM python:3.11-slim AS base\n"
        "COPY --chown=1000 pyproject.toml \\\n    uv.lock ./\n"
        "COPY services/ services/\n"
        "COPY --from=base /usr/bin/tool /usr/bin/tool\n"
        "RUN echo COPY not/this\n"
    )
    assert copied_sources(text) == ["pyproject.toml", "uv.lock", "services"]
    with pytest.raises(ImageError, match="shell form"):
        copied_sources('COPY ["a", "b/"]\n')


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A repository whose Dockerfile copies `pkg/` and nothing else."""
    (tmp_path / "infra" / "k8s").mkdir(parents=True)
    (tmp_path / DOCKERFILE).write_text("FROM python:3.11-slim\nCOPY pkg/ pkg/\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "notes.md").write_text("notes\n")
    (tmp_path / ".gitignore").write_text("__pycache__/\n")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "start")
    return tmp_path


def test_the_tag_is_a_digest_of_what_the_dockerfile_copies(project: Path):
    before = image_tag(project)
    assert TAG_PATTERN.fullmatch(before)

    (project / "notes.md").write_text("other notes\n")
    (project / "pkg" / "__pycache__").mkdir()
    (project / "pkg" / "__pycache__" / "code.pyc").write_bytes(b"\0")
    assert image_tag(project) == before  # not copied, or ignored

    (project / "pkg" / "code.py").write_text("x = 2\n")
    edited = image_tag(project)
    assert edited != before
    (project / "pkg" / "new.py").write_text("")  # untracked: the build context holds it
    assert image_tag(project) not in (before, edited)
    (project / DOCKERFILE).write_text("FROM python:3.11-slim\nCOPY pkg/ pkg/\nUSER 1000\n")
    assert image_tag(project) not in (before, edited)


def test_the_tag_is_the_same_before_and_after_the_commit_that_records_it(project: Path):
    """The RayService is rendered before its commit; CI computes the tag in the commit."""
    (project / "pkg" / "code.py").write_text("x = 3\n")
    rendered = image_tag(project)
    git(project, "commit", "-qam", "change the code")
    assert image_tag(project) == rendered
    git(project, "commit", "-q", "--allow-empty", "-m", "a release: no input changed")
    assert image_tag(project) == rendered


def test_the_reference_is_the_repository_setting_tagged_never_latest(monkeypatch):
    monkeypatch.setenv("MLOPS_SERVING_IMAGE", "registry.example:5000/team/serving")
    assert image_reference() == f"registry.example:5000/team/serving:{image_tag()}"
    for tagged in ("ghcr.io/me/serving:latest", "ghcr.io/me/serving@sha256:00"):
        monkeypatch.setenv("MLOPS_SERVING_IMAGE", tagged)
        with pytest.raises(ImageError, match="without a tag"):
            image_reference()


# --- the Dockerfile --------------------------------------------------------------------------


def test_the_image_is_the_locked_environment_and_the_project_on_python_3_11_slim():
    steps = instructions()
    (base,) = [args for op, args in steps if op == "FROM"]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base)
    runs = [args for op, args in steps if op == "RUN"]
    syncs = [i for i, (op, args) in enumerate(steps) if op == "RUN" and "uv sync" in args]
    assert [steps[i][1].split("uv sync")[1].strip() for i in syncs] == [
        "--frozen --no-dev --no-install-project",
        "--frozen --no-dev",
    ]
    copies = [i for i, (op, _) in enumerate(steps) if op == "COPY"]
    assert steps[copies[0]][1].split()[:-1] == ["pyproject.toml", "uv.lock"]
    assert copies[0] < syncs[0] < copies[1] and copies[-1] < syncs[1]  # the lock's layer first
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    packaged = copied_sources(dockerfile())[2:]
    assert sorted(packaged) == sorted(packages)  # the whole project is installed
    assert not any("--dev" in args.replace("--no-dev", "") for args in runs)


def test_uv_in_the_image_is_the_version_uv_lock_holds():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (locked,) = [p["version"] for p in lock["package"] if p["name"] == "uv"]
    assert f'"uv=={locked}"' in dockerfile()


def test_the_image_has_debian_haproxy_for_the_ingress_and_runs_as_a_user():
    steps = instructions()
    installs = [args for op, args in steps if op == "RUN" and "apt-get install" in args]
    assert installs and {"haproxy", "wget"} <= set(installs[0].split())  # wget: KubeRay probes
    rendered = yaml.safe_load(render(manifest_path()))["spec"]["rayClusterConfig"]
    env = {
        e["name"]: e["value"]
        for e in rendered["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    }
    # the RayService points Ray at the binary of Debian's package, named in the Dockerfile
    assert f"RAY_SERVE_HAPROXY_BINARY_PATH={env['RAY_SERVE_HAPROXY_BINARY_PATH']}" in dockerfile()
    users = [args for op, args in steps if op == "USER"]
    assert steps[-1][0] == "USER" and users[-1] not in ("root", "0")
    # KubeRay runs `bash -lc`: a login shell must find the environment's `ray`
    assert "/etc/profile.d/" in dockerfile() and "/app/.venv/bin" in dockerfile()


def test_dockerignore_keeps_local_state_out_and_the_copied_files_in():
    patterns = [
        line.strip()
        for line in (ROOT / DOCKERIGNORE).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv", ".mlops", "data"} <= set(patterns)
    for source in copied_sources(dockerfile()):
        assert not any(p == source or source.startswith(f"{p}/") for p in patterns), source


def test_a_service_spec_is_not_an_input_of_the_image(project: Path):
    (project / "infra" / "k8s" / "Dockerfile").write_text(
        "FROM python:3.11-slim\nCOPY pkg/ pkg/\nCOPY services/ services/\n"
    )
    (project / "services" / "fraud").mkdir(parents=True)
    (project / "services" / "fraud" / "service.yaml").write_text("model: {max_depth: 4}\n")
    (project / "services" / "spec.py").write_text("")
    before = image_tag(project)
    (project / "services" / "fraud" / "service.yaml").write_text("model: {max_depth: 5}\n")
    assert image_tag(project) == before  # a pull request changing a model's params
    (project / "services" / "spec.py").write_text("x = 1\n")
    assert image_tag(project) != before
