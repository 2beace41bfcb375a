"""Where the production profile keeps its state, the names of its buckets and its ports.

Everything lives under <MLOPS_HOME>/production/: the servers' data, their logs and pid files,
the generated secrets (secrets.env, 0600), the ports (ports.json) and the environment a client
of the profile needs (client.env, 0600).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mlops.processes import listening
from mlops.sandbox import server_port
from services.settings import (
    POSTGRES_PORT_ENV,
    PRODUCTION_MLFLOW_PORT_ENV,
    S3_PORT_ENV,
)

HOST = "127.0.0.1"  # every server of the profile listens here only
# Buckets of the S3 store: the infra/mlflow ConfigMap names the artifacts one too
ARTIFACTS_BUCKET = "mlops-mlflow-artifacts"
DVC_BUCKET = "mlops-dvc-remote"
INFERENCE_LOG_BUCKET = "mlops-inference-log"
BUCKETS = (ARTIFACTS_BUCKET, DVC_BUCKET, INFERENCE_LOG_BUCKET)
ARTIFACTS_URI = f"s3://{ARTIFACTS_BUCKET}/mlflow"
INFERENCE_LOG_URI = f"s3://{INFERENCE_LOG_BUCKET}/inference-log"

# Ports a user may set; the others (SeaweedFS's internal servers) are always chosen free
POSTGRES, S3, MLFLOW = "postgres", "s3", "mlflow"
CONFIGURABLE_PORTS = {
    POSTGRES: POSTGRES_PORT_ENV,
    S3: S3_PORT_ENV,
    MLFLOW: PRODUCTION_MLFLOW_PORT_ENV,
}
# SeaweedFS's `weed mini` runs all of these; each gets a port so none falls on a default
# (or on http port + 10000, weed's rule for gRPC ports)
WEED_PORT_FLAGS = {
    "weed-master": "-master.port",
    "weed-master-grpc": "-master.port.grpc",
    "weed-volume": "-volume.port",
    "weed-volume-grpc": "-volume.port.grpc",
    "weed-filer": "-filer.port",
    "weed-filer-grpc": "-filer.port.grpc",
    "weed-s3-grpc": "-s3.port.grpc",
    "weed-admin": "-admin.port",
    "weed-admin-grpc": "-admin.port.grpc",
}
PORT_NAMES = (*CONFIGURABLE_PORTS, *WEED_PORT_FLAGS)


@dataclass(frozen=True)
class Layout:
    """The profile's files under <MLOPS_HOME>/production/."""

    root: Path

    @classmethod
    def of(cls, home: Path) -> Layout:
        return cls(home / "production")

    def make(self) -> None:
        """The folder: traversable by PostgreSQL's user, listable by nobody else."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)

    @property
    def secrets(self) -> Path:
        return self.root / "secrets.env"

    @property
    def client_env(self) -> Path:
        return self.root / "client.env"

    @property
    def ports_file(self) -> Path:
        return self.root / "ports.json"

    def log(self, component: str) -> Path:
        return self.root / "logs" / f"{component}.log"

    def pid(self, component: str) -> Path:
        return self.root / f"{component}.pid"

    def data(self, component: str) -> Path:
        return self.root / component


def _recorded_ports(layout: Layout) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in json.loads(layout.ports_file.read_text()).items()}
    except FileNotFoundError:
        return {}


def ports(layout: Layout, fresh: tuple[str, ...] = ()) -> dict[str, int]:
    """Every port of the profile: set in the environment, else recorded, else chosen free (and
    recorded). A recorded port named in `fresh` (a server about to start) that something else
    holds now is chosen again."""
    recorded = _recorded_ports(layout)
    chosen: dict[str, int] = {}
    for name in PORT_NAMES:
        configured = os.environ.get(CONFIGURABLE_PORTS.get(name, ""))
        if configured:
            chosen[name] = int(configured)
            continue
        port = recorded.get(name)
        if port is None or (name in fresh and listening(HOST, port)):
            port = server_port({*chosen.values(), *recorded.values()})
        chosen[name] = port
    auto = {k: v for k, v in chosen.items() if not os.environ.get(CONFIGURABLE_PORTS.get(k, ""))}
    if auto != recorded:
        layout.ports_file.write_text(json.dumps(auto, indent=1))
    return chosen
