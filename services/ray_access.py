"""How processes reach Ray: with its token authentication, and only over loopback locally.

With `RAY_AUTH_MODE=token` every Ray server (GCS, raylets, workers' gRPC, the dashboard and its
REST API, the Ray client server) refuses a caller without the cluster's token: 401 or 403 over
HTTP, UNAUTHENTICATED over gRPC. The local head's token is generated under MLOPS_HOME (never in
git); Ray's own clients (`ray.init`, the `serve` CLI) read it from the file that
`RAY_AUTH_TOKEN_PATH` names, and REST calls send it as a bearer token. A remote cluster's
token comes from Ray's own variables: `RAY_AUTH_TOKEN`, or `RAY_AUTH_TOKEN_PATH`.

Ray replaces a loopback `--node-ip-address` with the machine's address (and its servers then
bind every interface) unless `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, whatever the name says; a
driver connecting to such a head needs the same setting before it imports `ray`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from services.settings import Settings

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": a loopback node address is kept
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def is_local(address: str) -> bool:
    """Whether a Ray address (host:port) is this machine's loopback."""
    return address.rsplit(":", 1)[0] in LOOPBACK_HOSTS


def token_path(settings: Settings) -> Path:
    """Where the token of the cluster at `settings.ray_address` is read from (and written,
    for the local head)."""
    return Path(os.environ.get(TOKEN_PATH_ENV, settings.home / "ray" / "auth_token"))


def ensure_token(settings: Settings) -> Path:
    """The local head's token file, created (owner-only) with a new random token if missing."""
    path = token_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path


def token(settings: Settings) -> str | None:
    """The token to present to the cluster: RAY_AUTH_TOKEN, else the token file, if any."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    path = token_path(settings)
    return path.read_text().strip() if path.exists() else None


def client_env(settings: Settings) -> dict[str, str]:
    """Environment for a Ray process or client of the cluster: token authentication when a
    token is known, and the loopback setting for a local head."""
    env = {LOOPBACK_ENV: "0"} if is_local(settings.ray_address) else {}
    if os.environ.get(TOKEN_ENV):
        return env | {AUTH_MODE_ENV: "token"}
    path = token_path(settings)
    return env | ({AUTH_MODE_ENV: "token", TOKEN_PATH_ENV: str(path)} if path.exists() else {})


def use_in_this_process(settings: Settings) -> None:
    """Apply `client_env` to this process (and the processes it starts): before `import ray`."""
    os.environ.update(client_env(settings))


def auth_headers(settings: Settings) -> dict[str, str]:
    """The header a REST call to the Ray dashboard carries (none when no token is known)."""
    value = token(settings)
    return {"Authorization": f"Bearer {value}"} if value else {}
