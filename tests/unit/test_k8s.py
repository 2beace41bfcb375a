"""serving.k8s: the rendered RayService is one KubeRay would apply, its serveConfigV2 one Ray
Serve parses, and it names the serving image by the tag CI pushes."""

from __future__ import annotations

import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve.config import ProxyLocation
from ray.serve.schema import ServeDeploySchema
from typer.testing import CliRunner

from mlops.cli import app
from services.inference_log import CANARY
from services.settings import LOG_WAL_DIR_ENV, MODEL_CACHE_DIR_ENV, get_settings
from serving import k8s, manifest
from serving.image import TAG_PATTERN
from serving.routing import RolloutTraffic

pytestmark = pytest.mark.unit
SERVICE = "fraud-detection"


@pytest.fixture
def serving_two(tmp_path: Path) -> Path:
    """A manifest where both services have a version, one of them rolling out a canary."""
    path = tmp_path / "production.yaml"
    shutil.copy(manifest.manifest_path(), path)
    manifest.set_model_version(path, "demand-forecast", "2")
    manifest.set_model_version(
        path, SERVICE, "3", RolloutTraffic(candidate="4", mode=CANARY, weight=10)
    )
    return path


def containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = document["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [c for group in groups for c in group["template"]["spec"]["containers"]]


def test_the_rendered_document_is_a_kuberay_rayservice(serving_two: Path):
    document = yaml.safe_load(k8s.render(serving_two))
    assert (document["apiVersion"], document["kind"]) == ("ray.io/v1", "RayService")
    assert document["metadata"]["name"] == "mlops-serving"
    cluster = document["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == version("ray")
    assert cluster["authOptions"] == {"mode": "token"}  # KubeRay turns Ray's token auth on
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no replicas on it
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["groupName"] and workers["minReplicas"] <= workers["replicas"]
    assert workers["replicas"] <= workers["maxReplicas"]
    assert [c["name"] for c in containers(document)] == ["ray-head", "ray-worker"]
    for container in containers(document):
        assert container["resources"]["requests"] == container["resources"]["limits"]


@pytest.mark.parametrize("which", ["committed", "serving two"])
def test_serve_config_v2_is_parsed_by_ray_serve(which: str, serving_two: Path):
    text = k8s.k8s_path().read_text() if which == "committed" else k8s.render(serving_two)
    config = ServeDeploySchema.model_validate(
        yaml.safe_load(yaml.safe_load(text)["spec"]["serveConfigV2"])
    )
    assert config.http_options.host == "0.0.0.0"
    assert config.proxy_location == ProxyLocation.EveryNode  # the manifest says HeadOnly
    if which == "serving two":
        assert sorted(app.name for app in config.applications) == ["demand-forecast", SERVICE]
        (app,) = [app for app in config.applications if app.name == SERVICE]
        assert app.import_path == manifest.IMPORT_PATH
        assert {d.name for d in app.deployments} == set(manifest.DEPLOYMENTS)


def test_a_config_ray_serve_refuses_is_never_written(serving_two: Path, tmp_path: Path):
    text = serving_two.read_text().replace("  port: 8000\n", "  port: Moon\n")
    assert "Moon" in text
    serving_two.write_text(text)
    target = tmp_path / "rayservice.yaml"
    target.write_text("before\n")
    with pytest.raises(manifest.ManifestError, match=r"(?s)not a valid Ray Serve config.*Moon"):
        k8s.write(serving_two, target)
    assert target.read_text() == "before\n"


def test_the_image_is_the_tag_ci_pushes_never_latest():
    """ci.yml's image job pushes the tag `mlops ci image-tag` prints (test_workflows.py)."""
    result = CliRunner().invoke(app, ["ci", "image-tag"])
    assert result.exit_code == 0, result.output
    tag = result.output.strip()
    assert TAG_PATTERN.fullmatch(tag)
    for document in (
        yaml.safe_load(k8s.k8s_path().read_text()),
        yaml.safe_load(k8s.render(manifest.manifest_path())),
    ):
        images = {c["image"] for c in containers(document)}
        assert images == {f"{get_settings().serving_image}:{tag}"}, (
            "infra/k8s/rayservice.yaml is out of date: run `mlops render k8s`"
        )


def test_replicas_write_ahead_to_a_folder_on_their_node_that_outlives_the_pod(serving_two: Path):
    document = yaml.safe_load(k8s.render(serving_two))
    (workers,) = document["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    pod = workers["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "hostPath" in v]
    assert volume["hostPath"] == {"path": k8s.WAL_HOST_PATH, "type": "DirectoryOrCreate"}
    (worker,) = pod["containers"]
    (mount,) = [m for m in worker["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == k8s.WAL_HOST_PATH
    env = {item["name"]: item.get("value") for item in worker["env"]}
    assert env[LOG_WAL_DIR_ENV] == k8s.WAL_HOST_PATH
    (owner,) = pod["initContainers"]  # hands the root-owned folder to the image's user
    assert owner["command"][-1] == k8s.WAL_HOST_PATH and owner["volumeMounts"] == [mount]
    assert owner["image"] == worker["image"]


def test_replicas_load_versions_from_a_writable_model_cache_in_their_pod(serving_two: Path):
    """The image's MLOPS_HOME is read-only to its user: the cache is a volume of the pod."""
    document = yaml.safe_load(k8s.render(serving_two))
    (workers,) = document["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    pod = workers["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "emptyDir" in v]
    (worker,) = pod["containers"]
    (mount,) = [m for m in worker["volumeMounts"] if m["name"] == volume["name"]]
    env = {item["name"]: item.get("value") for item in worker["env"]}
    assert env[MODEL_CACHE_DIR_ENV] == mount["mountPath"] == k8s.MODEL_CACHE_PATH


def test_each_containers_haproxy_runs_one_thread_per_core_of_the_container(serving_two: Path):
    for container in containers(yaml.safe_load(k8s.render(serving_two))):
        env = {item["name"]: item.get("value") for item in container["env"]}
        cores = container["resources"]["limits"]["cpu"]
        assert env[k8s.HAPROXY_THREADS_ENV] == cores, container["name"]
