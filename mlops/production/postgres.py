"""PostgreSQL of the production profile: a throwaway cluster under <MLOPS_HOME>/production/.

Debian's server binaries (postgresql-15), TCP on 127.0.0.1 only (no Unix socket), password
(SCRAM) authentication for every connection. PostgreSQL refuses to run as root: started by
root, the cluster belongs to Debian's `postgres` user, who must be able to reach the folder.
The `mlflow` role owns the databases `mlflow` and `mlflow_auth` (infra/mlflow/README.md).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

from mlops.processes import ComponentStatus, recorded_pid, start_server, stop_server
from mlops.production.layout import HOST, POSTGRES, Layout
from mlops.production.secrets import Secrets

log = logging.getLogger(__name__)

COMPONENT = "postgresql"
ROLE = "mlflow"  # MLflow's role: owner of the databases below
DATABASES = ("mlflow", "mlflow_auth")  # tracking and registry; basic-auth users
SUPERUSER = "mlops"  # the cluster's bootstrap superuser
OS_USER = "postgres"  # Debian's; owns the cluster when the profile runs as root
DEBIAN_BINARIES = Path("/usr/lib/postgresql")
SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "unix_socket_directories": "''",  # TCP on loopback only: no socket file to reach
    "password_encryption": "'scram-sha-256'",
    "max_connections": "60",
    "shared_buffers": "'32MB'",
}
HBA = f"host all all {HOST}/32 scram-sha-256\n"


def binary(name: str) -> str:
    """A server binary (initdb, postgres): from PATH, else Debian's newest version."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(DEBIAN_BINARIES.glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise RuntimeError(
            f"PostgreSQL's `{name}` not found: install Debian's postgresql package "
            "(`make install` as root, or `sudo apt-get install postgresql`)"
        )
    return str(versions[-1])


def owner() -> str | None:
    """The user the cluster runs as: none to switch to unless we are root."""
    return OS_USER if os.geteuid() == 0 else None


def reachable(path: Path, user: str) -> bool:
    """Whether `user` may traverse every folder above `path` (search permission)."""
    account = pwd.getpwnam(user)
    groups = {account.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    for folder in path.resolve().parents:
        info = folder.stat()
        if info.st_uid == account.pw_uid:
            bit = stat.S_IXUSR
        elif info.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def _connect(port: int, user: str, password: str, database: str = "postgres") -> Any:
    import psycopg

    return psycopg.connect(
        host=HOST,
        port=port,
        user=user,
        password=password,
        dbname=database,
        connect_timeout=3,
        autocommit=True,  # CREATE DATABASE runs outside a transaction
    )


def answers(port: int, user: str, password: str, database: str) -> bool:
    import psycopg

    try:
        with _connect(port, user, password, database) as connection:
            return connection.execute("SELECT 1").fetchone() == (1,)
    except psycopg.Error:
        return False


def url(port: int) -> str:
    return f"postgresql://{ROLE}@{HOST}:{port}/{DATABASES[0]}"


def status(port: int, secrets: Secrets) -> ComponentStatus:
    healthy = answers(port, ROLE, secrets.postgres_password, DATABASES[0])
    return ComponentStatus(COMPONENT, healthy, url(port), managed=True)


def _as_owner(command: list[str]) -> None:
    user = owner()
    subprocess.run(
        command, check=True, capture_output=True, user=user, group=user,
        extra_groups=[] if user else None,
    )  # fmt: skip


def initialise(layout: Layout, secrets: Secrets) -> Path:
    """Create the cluster once (initdb); returns its data folder."""
    folder = layout.data(POSTGRES)
    data = folder / "data"
    if (data / "PG_VERSION").exists():
        return data
    user = owner()
    if user and not reachable(folder, user):
        raise RuntimeError(
            f"PostgreSQL runs as the `{user}` user (it refuses root), who cannot reach {folder}: "
            "set MLOPS_HOME to a folder every user may traverse (o+x on its parents)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    password_file = folder / "superuser-password"
    password_file.write_text(secrets.postgres_superuser_password)
    password_file.chmod(0o600)
    if user:
        account = pwd.getpwnam(user)
        for path in (folder, password_file):
            os.chown(path, account.pw_uid, account.pw_gid)
    folder.chmod(0o700)
    try:
        command = [binary("initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=scram-sha-256"]
        _as_owner([*command, f"--pwfile={password_file}", "-E", "UTF8", "--locale=C"])
    finally:
        password_file.unlink(missing_ok=True)
    with (data / "postgresql.conf").open("a") as conf:
        conf.writelines(f"{key} = {value}\n" for key, value in SETTINGS.items())
    (data / "pg_hba.conf").write_text(HBA)
    return data


def start(layout: Layout, port: int, secrets: Secrets) -> None:
    """Start the server (initialised first if new); creates the role and the databases."""
    data = initialise(layout, secrets)
    if recorded_pid(layout.pid(COMPONENT)) is None:
        command = [binary("postgres"), "-D", str(data), "-p", str(port)]
        start_server(command, layout.log(COMPONENT), layout.pid(COMPONENT), os.environ, owner())


def ready(port: int, secrets: Secrets) -> bool:
    return answers(port, SUPERUSER, secrets.postgres_superuser_password, "postgres")


def bootstrap(port: int, secrets: Secrets) -> None:
    """The `mlflow` role (its password sent as a quoted literal over the connection) and its
    databases; idempotent."""
    from psycopg import sql

    role = sql.Identifier(ROLE)
    with _connect(port, SUPERUSER, secrets.postgres_superuser_password) as connection:
        if not connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone():
            connection.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        password = sql.Literal(secrets.postgres_password)
        alter = sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(role, password)
        connection.execute(alter)
        for name in DATABASES:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            if not connection.execute(query, (name,)).fetchone():
                create = sql.SQL("CREATE DATABASE {} OWNER {}")
                connection.execute(create.format(sql.Identifier(name), role))


def stop(layout: Layout) -> bool:
    """Fast shutdown (SIGINT to the postmaster: sessions end, the data is checkpointed)."""
    return stop_server(layout.pid(COMPONENT), signal.SIGINT, group=False)
