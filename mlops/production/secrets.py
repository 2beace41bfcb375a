"""The production profile's credentials: from the environment, else generated once.

Each is read from its variable (the names infra/mlflow/start.sh, libpq and boto3 read);
one that is unset is generated on first use and kept in <MLOPS_HOME>/production/secrets.env
(mode 0600, `KEY=value` lines). Values reach servers through their environment or a file,
never a command line.
"""

from __future__ import annotations

import os
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlops.production.layout import Layout
from services.settings import S3_ACCESS_KEY_ENV, S3_SECRET_KEY_ENV

# the cluster's bootstrap superuser: creates the `mlflow` role and its databases
POSTGRES_SUPERUSER_PASSWORD_ENV = "MLOPS_POSTGRES_SUPERUSER_PASSWORD"
POSTGRES_PASSWORD_ENV = "PGPASSWORD"  # the `mlflow` role's, read by libpq in MLflow
FLASK_SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"
ADMIN_USERNAME_ENV = "MLFLOW_AUTH_ADMIN_USERNAME"
ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
DEFAULT_ADMIN_USERNAME = "admin"
ALPHABET = string.ascii_letters + string.digits  # no character a shell or URI would quote


@dataclass(frozen=True)
class Secrets:
    postgres_superuser_password: str
    postgres_password: str
    flask_secret_key: str
    admin_username: str
    admin_password: str
    s3_access_key: str
    s3_secret_key: str

    def mlflow_env(self) -> dict[str, str]:
        """What start.sh and the S3 client of the MLflow server read."""
        return {
            POSTGRES_PASSWORD_ENV: self.postgres_password,
            FLASK_SECRET_KEY_ENV: self.flask_secret_key,
            ADMIN_USERNAME_ENV: self.admin_username,
            ADMIN_PASSWORD_ENV: self.admin_password,
        } | self.s3_env()

    def s3_env(self) -> dict[str, str]:
        return {S3_ACCESS_KEY_ENV: self.s3_access_key, S3_SECRET_KEY_ENV: self.s3_secret_key}


def _token(length: int = 32) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


# each field of Secrets: its variable and how a value is generated
GENERATED: dict[str, tuple[str, Callable[[], str]]] = {
    "postgres_superuser_password": (POSTGRES_SUPERUSER_PASSWORD_ENV, _token),
    "postgres_password": (POSTGRES_PASSWORD_ENV, _token),
    "flask_secret_key": (FLASK_SECRET_KEY_ENV, lambda: _token(48)),
    "admin_username": (ADMIN_USERNAME_ENV, lambda: DEFAULT_ADMIN_USERNAME),
    "admin_password": (ADMIN_PASSWORD_ENV, _token),
    "s3_access_key": (S3_ACCESS_KEY_ENV, lambda: _token(20).upper()),
    "s3_secret_key": (S3_SECRET_KEY_ENV, lambda: _token(40)),
}


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=value` lines (no quoting: generated values need none)."""
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def write_private(path: Path, values: dict[str, str]) -> None:
    """`KEY=value` lines in a file only its owner may read, created so from the start."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.writelines(f"{key}={value}\n" for key, value in values.items())


def load_secrets(layout: Layout) -> Secrets:
    """The credentials: each from the environment, else from secrets.env, else generated
    (and added to secrets.env; a value from the environment is never written)."""
    stored = read_env_file(layout.secrets)
    missing = {
        name: make()
        for name, make in GENERATED.values()
        if name not in stored and not os.environ.get(name)
    }
    if missing:
        write_private(layout.secrets, stored | missing)
    known = stored | missing
    return Secrets(
        **{field: os.environ.get(name) or known[name] for field, (name, _) in GENERATED.items()}
    )
