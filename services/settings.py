"""Settings read from the environment, with the ecosystem's standard names and local defaults.

Read inside functions (never at import time) so tests and CLIs can change the environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast, get_args

PACKAGE_REPO = Path(__file__).resolve().parent.parent  # the checkout this package lives in
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"  # MLflow's own name for its tracking server
INFERENCE_LOG_URI_ENV = "MLOPS_INFERENCE_LOG_URI"  # any fsspec URI (s3://... in production)
# the keys the real-time and batch endpoints accept (serving/auth.py); unset: no key asked
API_KEY_ENV = "MLOPS_API_KEY"
# "0" turns the replicas' request records and metrics off: for the benchmark's A/B only
REQUEST_TELEMETRY_ENV = "MLOPS_REQUEST_TELEMETRY"
# the node-local folder of the inference log's write-ahead files (default <MLOPS_HOME>/wal)
LOG_WAL_DIR_ENV = "MLOPS_LOG_WAL_DIR"
# the node-local cache of served versions' artifacts (default <MLOPS_HOME>/model-cache):
# replicas and batch scorers load a version from it, MLflow is asked only on a miss
MODEL_CACHE_DIR_ENV = "MLOPS_MODEL_CACHE_DIR"
# what an answered row survives before its Parquet part is written (services/wal.py)
LOG_DURABILITY_ENV = "MLOPS_LOG_DURABILITY"
# memory: buffered in the replica only (lost with its process); os: written to the operating
# system before the answer leaves (a killed process loses nothing); fsync: also flushed to the
# disk before the answer leaves (a power loss loses nothing). docs/RELIABILITY.md has the costs.
Durability = Literal["memory", "os", "fsync"]
DURABILITY_LEVELS: tuple[Durability, ...] = get_args(Durability)
DEFAULT_DURABILITY: Durability = "os"
# what scores a replica's small calls: onnx (the version's checked ONNX conversion, where
# registration kept one; services/onnx_scoring.py) or xgboost (always the booster)
SERVING_RUNTIME_ENV = "MLOPS_SERVING_RUNTIME"
ServingRuntime = Literal["onnx", "xgboost"]
SERVING_RUNTIMES: tuple[ServingRuntime, ...] = get_args(ServingRuntime)
DEFAULT_SERVING_RUNTIME: ServingRuntime = "onnx"
# Where the serving image is pushed (registry/name, no tag): serving.image tags it
SERVING_IMAGE_ENV = "MLOPS_SERVING_IMAGE"
# The local stack's profiles: embedded (MLflow on SQLite, a Ray head) and production
# (PostgreSQL, SeaweedFS's S3 and MLflow's basic-auth server, mlops/production/)
StackProfile = Literal["embedded", "production"]
STACK_PROFILES: tuple[StackProfile, ...] = get_args(StackProfile)
# Ports of the production profile's servers on 127.0.0.1; unset: free ports chosen by the
# first `mlops stack up --profile production` and kept in <MLOPS_HOME>/production/ports.json
# What a client of a production stack (and every replica) needs: MLflow's credentials, the S3
# store's keys and endpoint (boto3, s3fs for the inference log, DVC's S3 remote; MLflow's own
# variable for its artifact store)
TRACKING_USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
TRACKING_PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
S3_ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
S3_SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
AWS_ENDPOINT_ENV = "AWS_ENDPOINT_URL"
MLFLOW_S3_ENDPOINT_ENV = "MLFLOW_S3_ENDPOINT_URL"
# worker nodes the production profile starts beside the local Ray head
RAY_WORKER_NODES_ENV = "MLOPS_RAY_WORKER_NODES"
POSTGRES_PORT_ENV = "MLOPS_POSTGRES_PORT"
S3_PORT_ENV = "MLOPS_S3_PORT"
PRODUCTION_MLFLOW_PORT_ENV = "MLOPS_PRODUCTION_MLFLOW_PORT"


def repo_root() -> Path:
    """The working tree the pipeline reads and writes (MLOPS_REPO_ROOT, default this checkout)."""
    return Path(os.environ.get("MLOPS_REPO_ROOT", PACKAGE_REPO)).resolve()


@dataclass(frozen=True)
class Settings:
    """Where the platform's state and services live."""

    home: Path
    tracking_uri: str
    ray_address: str
    serve_url: str
    inference_log_uri: str
    dashboard_url: str
    metrics_port: int  # the local Ray head's Prometheus endpoint (loopback)
    ray_worker_nodes: int  # beside the local head, in the production profile
    request_telemetry: bool  # request records and metrics in the replicas (off: benchmarking)
    log_wal_dir: Path  # node-local write-ahead files of the inference log
    log_durability: Durability
    serving_runtime: ServingRuntime
    model_cache_dir: Path  # node-local copies of served versions' booster and spec
    serving_image: str  # the serving image's repository, e.g. ghcr.io/<owner>/mlops-serving

    @property
    def mlflow_port(self) -> int:
        return int(self.tracking_uri.rsplit(":", 1)[-1].split("/")[0])

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


def get_settings() -> Settings:
    """Current settings: MLOPS_HOME (local state), MLFLOW_TRACKING_URI, RAY_ADDRESS, ..."""
    env = os.environ
    home = Path(env.get("MLOPS_HOME", repo_root() / ".mlops")).resolve()
    return Settings(
        home=home,
        tracking_uri=env.get(TRACKING_URI_ENV, "http://127.0.0.1:5000"),
        ray_address=env.get("RAY_ADDRESS", "127.0.0.1:6379"),
        serve_url=env.get("MLOPS_SERVE_URL", "http://127.0.0.1:8000").rstrip("/"),
        inference_log_uri=env.get(INFERENCE_LOG_URI_ENV, str(home / "inference-log")),
        dashboard_url=env.get("MLOPS_DASHBOARD_URL", "http://127.0.0.1:8265"),
        metrics_port=int(env.get("MLOPS_METRICS_PORT", "8080")),
        ray_worker_nodes=int(env.get(RAY_WORKER_NODES_ENV, "2")),
        request_telemetry=env.get(REQUEST_TELEMETRY_ENV, "1") != "0",
        log_wal_dir=Path(env.get(LOG_WAL_DIR_ENV, home / "wal")).resolve(),
        log_durability=cast(
            Durability, choice(env, LOG_DURABILITY_ENV, DEFAULT_DURABILITY, DURABILITY_LEVELS)
        ),
        serving_runtime=cast(
            ServingRuntime,
            choice(env, SERVING_RUNTIME_ENV, DEFAULT_SERVING_RUNTIME, SERVING_RUNTIMES),
        ),
        model_cache_dir=Path(env.get(MODEL_CACHE_DIR_ENV, home / "model-cache")).resolve(),
        serving_image=env.get(SERVING_IMAGE_ENV, "ghcr.io/OWNER/mlops-serving"),
    )


def choice(env: Mapping[str, str], variable: str, default: str, options: tuple[str, ...]) -> str:
    """The value of a setting with a few named options (`default` when unset); a ValueError
    names the setting and its options."""
    value = env.get(variable, default)
    if value not in options:
        raise ValueError(f"{variable}={value!r}: expected one of {', '.join(options)}")
    return value


def tool(name: str) -> str:
    """A console script of this environment (dvc, mlflow, ray, act), else from PATH."""
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else name
