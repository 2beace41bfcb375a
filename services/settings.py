"""Settings read from the environment, with the ecosystem's standard names and local defaults.

Read inside functions (never at import time) so tests and CLIs can change the environment.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE_REPO = Path(__file__).resolve().parent.parent  # the checkout this package lives in
# "0" turns the replicas' request records and metrics off: for the benchmark's A/B only
REQUEST_TELEMETRY_ENV = "MLOPS_REQUEST_TELEMETRY"


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
    request_telemetry: bool  # request records and metrics in the replicas (off: benchmarking)

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
        tracking_uri=env.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"),
        ray_address=env.get("RAY_ADDRESS", "127.0.0.1:6379"),
        serve_url=env.get("MLOPS_SERVE_URL", "http://127.0.0.1:8000").rstrip("/"),
        inference_log_uri=env.get("MLOPS_INFERENCE_LOG_URI", str(home / "inference-log")),
        dashboard_url=env.get("MLOPS_DASHBOARD_URL", "http://127.0.0.1:8265"),
        metrics_port=int(env.get("MLOPS_METRICS_PORT", "8080")),
        request_telemetry=env.get(REQUEST_TELEMETRY_ENV, "1") != "0",
    )


def tool(name: str) -> str:
    """A console script of this environment (dvc, mlflow, ray, act), else from PATH."""
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else name
