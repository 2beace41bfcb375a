"""`infra/k8s/rayservice.yaml`: a KubeRay RayService rendered from the serve manifest.

Never edited by hand: every change to what runs (serving.gitops.record) and `mlops render
manifest` re-render it next to the manifest, and a test checks they agree.
"""

from __future__ import annotations

from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import yaml

from services.settings import LOG_WAL_DIR_ENV, MODEL_CACHE_DIR_ENV, repo_root
from serving.image import DOCKERFILE, image_reference
from serving.manifest import ManifestError, deployable, load

HEADER = f"""\
# KubeRay RayService rendered from {{source}} by `mlops render k8s`: do not edit by hand.
# The image is built from {DOCKERFILE}, tagged with the digest of its inputs (serving/image.py).
# MLflow and the inference log are reached through the `mlops-serving` Secret/ConfigMap.
"""


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (serveConfigV2) as readable `|` blocks."""


_BlockDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    ),
)


# Ray starts its workers at nice 15, so that its own daemons win the CPU. On a serving cluster
# the replicas are the work: at nice 15 any busy nice-0 process preempts them, which tripled
# p99 at 16 connections on 2 cores (docs/SERVING.md).
SERVING_ENV = {"RAY_worker_niceness": "0"}
# Ray Serve's high-throughput mode: HAProxy ingress straight to the replicas' HTTP servers, user
# code on the replica's event loop, gRPC between deployments (benchmarks/RESULTS.md). gRPC
# clients stop at 4 MiB by default, below a /batch response; gRPC's own maximum lifts that.
# HAProxy's ingress metrics are off: a log line per request, parsed in Python by the HAProxy
# manager, cost 8% of the CPU per request; replicas still export their request metrics.
THROUGHPUT_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": str(2**31 - 1),
    "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
}

# HAProxy's threads: one per core of its node or container (Ray Serve's default is 4 whatever
# the cores; one per core gave more requests/s and a lower p99 on 2 cores: benchmarks/RESULTS.md)
HAPROXY_THREADS_ENV = "RAY_SERVE_HAPROXY_NBTHREAD"


def haproxy_threads(cores: int) -> dict[str, str]:
    """The ingress setting of a node with `cores` cores."""
    return {HAPROXY_THREADS_ENV: str(cores)}


# The inference log's write-ahead folder must outlive a pod: a hostPath on the worker's node,
# where the next replica started there (or `mlops log recover` on the node) commits what a
# killed one left (docs/RELIABILITY.md). The image runs as uid RUN_AS_USER: an init container
# hands it the folder, which the kubelet creates owned by root.
WAL_HOST_PATH = "/var/lib/mlops/wal"
RUN_AS_USER = 1000  # the image's user (infra/k8s/Dockerfile)
# Replicas load a version from a node-local cache of its artifacts (services/model_cache.py),
# filled from MLflow on a miss: an emptyDir, one per pod and so per Ray node; a replica restarted
# in the pod finds its version there. (The image's own MLOPS_HOME is read-only.)
MODEL_CACHE_PATH = "/var/cache/mlops/models"


def k8s_path() -> Path:
    return repo_root() / "infra" / "k8s" / "rayservice.yaml"


def _container(name: str, image: str, cpu: str, memory: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "env": [
            {"name": name, "value": value}
            for name, value in (
                SERVING_ENV
                | THROUGHPUT_ENV
                | haproxy_threads(int(cpu))
                | {"RAY_SERVE_HAPROXY_BINARY_PATH": "/usr/sbin/haproxy"}
            ).items()
        ],
        "envFrom": [
            {"configMapRef": {"name": "mlops-serving"}},
            {"secretRef": {"name": "mlops-serving"}},
        ],
        "resources": {
            "requests": {"cpu": cpu, "memory": memory},
            "limits": {"cpu": cpu, "memory": memory},
        },
    }


def _with_write_ahead_folder(container: dict[str, Any]) -> dict[str, Any]:
    """A pod spec running `container` with the node's write-ahead folder mounted."""
    mount = [{"name": "inference-log-wal", "mountPath": WAL_HOST_PATH}]
    return {
        "initContainers": [
            {
                "name": "wal-owner",
                "image": container["image"],
                "command": ["chown", f"{RUN_AS_USER}:{RUN_AS_USER}", WAL_HOST_PATH],
                "securityContext": {"runAsUser": 0},
                "volumeMounts": mount,
            }
        ],
        "containers": [
            container
            | {
                "env": [*container["env"], {"name": LOG_WAL_DIR_ENV, "value": WAL_HOST_PATH}],
                "volumeMounts": mount,
            }
        ],
        "volumes": [
            {
                "name": "inference-log-wal",
                "hostPath": {"path": WAL_HOST_PATH, "type": "DirectoryOrCreate"},
            }
        ],
    }


def _with_model_cache(pod: dict[str, Any]) -> dict[str, Any]:
    """`pod` with the model cache mounted in its containers."""
    mount = {"name": "model-cache", "mountPath": MODEL_CACHE_PATH}
    setting = {"name": MODEL_CACHE_DIR_ENV, "value": MODEL_CACHE_PATH}
    containers = [
        container
        | {
            "env": [*container["env"], setting],
            "volumeMounts": [*container.get("volumeMounts", []), mount],
        }
        for container in pod["containers"]
    ]
    volume = {"name": mount["name"], "emptyDir": {}}
    return pod | {"containers": containers, "volumes": [*pod.get("volumes", []), volume]}


def serve_config_v2(manifest_file: Path) -> str:
    """The manifest's deployable applications as `serveConfigV2`, checked with Ray's own
    schema of a Serve config file (what KubeRay hands to Serve)."""
    from ray.serve.schema import ServeDeploySchema  # imports Ray: only when rendering

    serve_config = deployable(load(manifest_file))
    # a pod per node, each its own address: a proxy on every node, reachable by its Service
    serve_config["proxy_location"] = "EveryNode"
    serve_config["http_options"] = {**serve_config.get("http_options", {}), "host": "0.0.0.0"}
    text = yaml.safe_dump(serve_config, sort_keys=False)
    try:
        ServeDeploySchema.model_validate(yaml.safe_load(text))
    except ValueError as exc:  # pydantic's ValidationError
        raise ManifestError(f"{manifest_file}: not a valid Ray Serve config: {exc}") from None
    return text


def render(manifest_file: Path, source: Path | None = None) -> str:
    """The RayService document for the manifest's deployable applications (`source`: the
    manifest's path to name in the header, when `manifest_file` is a copy elsewhere)."""
    image = image_reference()
    head = {
        "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
        "template": {
            "spec": {
                "containers": [
                    _container("ray-head", image, "1", "4Gi")
                    | {
                        "ports": [
                            {"containerPort": 6379, "name": "gcs"},
                            {"containerPort": 8265, "name": "dashboard"},
                            {"containerPort": 8000, "name": "serve"},
                        ]
                    }
                ]
            }
        },
    }
    workers = {
        "groupName": "cpu",
        "replicas": 1,
        "minReplicas": 1,
        "maxReplicas": 4,
        "rayStartParams": {},
        "template": {
            "spec": _with_model_cache(
                _with_write_ahead_folder(_container("ray-worker", image, "2", "4Gi"))
            )
        },
    }
    document = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "mlops-serving", "labels": {"app.kubernetes.io/part-of": "mlops"}},
        "spec": {
            "serveConfigV2": serve_config_v2(manifest_file),
            "rayClusterConfig": {
                "rayVersion": installed_version("ray"),
                # Ray's token authentication (KubeRay >= 1.5.1 keeps the token in a Secret and
                # gives it to every Ray container); clients: docs/SERVING.md
                "authOptions": {"mode": "token"},
                "enableInTreeAutoscaling": True,
                "headGroupSpec": head,
                "workerGroupSpecs": [workers],
            },
        },
    }
    if source is None:
        source = (
            manifest_file.relative_to(repo_root())
            if manifest_file.is_relative_to(repo_root())
            else manifest_file
        )
    return HEADER.format(source=source) + yaml.dump(
        document, Dumper=_BlockDumper, sort_keys=False, width=100
    )


def write(manifest_file: Path, target: Path | None = None) -> Path:
    target = target or k8s_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(manifest_file))
    return target
