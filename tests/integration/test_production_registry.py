"""MLflow's registry on PostgreSQL behind the basic-auth app (the production profile):
registrations and alias moves from several processes at once, and who may move an alias.

Writers are separate processes released together once each has imported MLflow (first to
register a version each, then to move an alias to it); they sign in with the client
environment the profile writes (client.env). Reads run meanwhile in this process.
"""

from __future__ import annotations

import json
import secrets
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from services.settings import TRACKING_PASSWORD_ENV, TRACKING_URI_ENV, TRACKING_USERNAME_ENV
from tests.figures import record_figure
from tests.production import ProductionStack

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
MODEL = "production-registry"
PROCESSES = 4
ALIAS = "production"
ALIAS_ROUNDS = 4  # alias moves per writer (each request checks a password hash: ~0.3 s CPU)
# A writer: on the first go line registers a version, on the second moves the alias to it
WRITER = (
    "import json, sys, mlflow\n"
    "from mlflow import MlflowClient\n"
    "uri, name, alias, rounds = sys.argv[1:5]\n"
    "print('ready', flush=True); sys.stdin.readline()\n"
    "version = mlflow.register_model(uri, name).version\n"
    "print(json.dumps(version), flush=True); sys.stdin.readline()\n"
    "for _ in range(int(rounds)):\n"
    "    MlflowClient().set_registered_model_alias(name, alias, version)\n"
    "print(json.dumps(version), flush=True)\n"
)


class Writers:
    """PROCESSES writer processes, each released a step at a time, all at once."""

    def __init__(self, model_uri: str, env: dict[str, str]) -> None:
        args = [sys.executable, "-c", WRITER, model_uri, MODEL, ALIAS, str(ALIAS_ROUNDS)]
        self.processes = [
            subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(PROCESSES)
        ]
        assert [self._line(p) for p in self.processes] == ["ready"] * PROCESSES

    @staticmethod
    def _line(process: subprocess.Popen[str]) -> str:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line:  # the process ended: say why
            assert process.stderr is not None
            raise AssertionError(process.stderr.read()[-2000:])
        return line

    def step(self) -> tuple[list[str], float]:
        """Release every writer; wait for each one's JSON line; their values and the time."""
        started = time.monotonic()
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        values = [json.loads(self._line(p)) for p in self.processes]
        return values, time.monotonic() - started

    def close(self) -> None:
        for process in self.processes:
            process.kill()
            process.communicate()


def median_ms(request: Callable[[], object], times: int = 5) -> float:
    durations = []
    for _ in range(times):
        started = time.perf_counter()
        request()
        durations.append((time.perf_counter() - started) * 1000)
    return statistics.median(durations)


class PyfuncIdentity(mlflow.pyfunc.PythonModel):
    def predict(self, context: object, model_input: object, params: object = None) -> object:
        return model_input


@pytest.fixture(scope="module")
def client_env(production: ProductionStack) -> Iterator[dict[str, str]]:
    """This module signs in as the profile's admin; the tracking and registry URIs the other
    tests use are restored afterwards (`set_tracking_uri(None)` would unset the variable)."""
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with production.as_client() as env:
        mlflow.set_tracking_uri(env[TRACKING_URI_ENV])
        mlflow.set_registry_uri(env[TRACKING_URI_ENV])
        yield env
    mlflow.set_tracking_uri(previous[0])
    mlflow.set_registry_uri(previous[1])


@pytest.fixture(scope="module")
def logged_model(client_env: dict[str, str]) -> str:
    """A small pyfunc model logged once (its artifacts go through the server to S3), in an
    experiment of the profile's server (not the experiment other tests made active)."""
    experiment = MlflowClient().create_experiment(f"production-profile-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=PyfuncIdentity(), pip_requirements=["mlflow"]
        )
    return info.model_uri


@pytest.fixture(scope="module")
def writers(logged_model: str, client_env: dict[str, str]) -> Iterator[Writers]:
    started = Writers(logged_model, client_env)
    yield started
    started.close()


@pytest.fixture(scope="module")
def registered(writers: Writers) -> dict[str, object]:
    """PROCESSES registrations of one model at once, and the versions there before."""
    client = MlflowClient()
    before = {int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")}
    returned, seconds = writers.step()
    return {"before": before, "returned": returned, "seconds": seconds}


def test_parallel_registrations_on_postgresql_get_unique_consecutive_versions(registered):
    item = f"Production profile: {PROCESSES} registrations of one model at once (PostgreSQL)"
    returned = sorted(int(v) for v in registered["returned"])
    newest = max(registered["before"], default=0)
    expected = list(range(newest + 1, newest + 1 + PROCESSES))
    stored = {int(v.version) for v in MlflowClient().search_model_versions(f"name = '{MODEL}'")}
    shown, target = ", ".join(map(str, returned)), ", ".join(map(str, expected))
    duplicates = len(returned) - len(set(returned))
    record_figure(item, "versions returned", shown, target, returned == expected)
    record_figure(item, "duplicates", duplicates, "0", duplicates == 0)
    record_figure(item, "wall time (s)", round(float(registered["seconds"]), 1), "-", True)
    assert returned == expected
    assert stored == registered["before"] | set(expected)


def test_concurrent_alias_moves_end_on_a_written_version_and_readers_see_valid_ones(
    registered, writers
):
    item = f"Production profile: `{ALIAS}` alias moved by {PROCESSES} processes at once"
    versions = [str(v) for v in registered["returned"]]
    client = MlflowClient()
    client.set_registered_model_alias(MODEL, ALIAS, versions[0])
    seen: list[str] = []
    moving = threading.Event()

    def read_while_moving() -> None:
        while moving.is_set():
            seen.append(client.get_model_version_by_alias(MODEL, ALIAS).version)

    reader = threading.Thread(target=read_while_moving)
    moving.set()
    reader.start()
    try:
        _, seconds = writers.step()
    finally:
        moving.clear()
        reader.join()
    final = client.get_model_version_by_alias(MODEL, ALIAS).version
    # search results carry no aliases: each version is read
    holders = [v for v in versions if ALIAS in client.get_model_version(MODEL, v).aliases]
    invalid = [v for v in seen if v not in versions]
    record_figure(item, "alias moves", PROCESSES * ALIAS_ROUNDS, "-", True)
    record_figure(item, "reads meanwhile / of no written version", f"{len(seen)} / {len(invalid)}",
                  "0 invalid", bool(seen) and not invalid)  # fmt: skip
    record_figure(item, "end state", f"v{final}", "one of the written versions", final in versions)
    record_figure(item, "versions holding the alias", len(holders), "1", holders == [final])
    record_figure(item, "wall time (s)", round(seconds, 1), "-", True)
    assert seen and not invalid
    assert final in versions and holders == [final]


def test_the_basic_auth_app_refuses_bad_credentials_and_a_reader_moving_an_alias(
    registered, client_env
):
    item = "Production profile: MLflow basic-auth"
    from mlflow.server import get_app_client

    uri = client_env[TRACKING_URI_ENV]
    admin = (client_env[TRACKING_USERNAME_ENV], client_env[TRACKING_PASSWORD_ENV])
    reader = ("reader", secrets.token_urlsafe(16))
    users = get_app_client("basic-auth", tracking_uri=uri)
    users.create_user(*reader)
    users.grant_user_permission(reader[0], "registered_model", MODEL, "READ")
    version = str(registered["returned"][0])
    alias = f"{uri}/api/2.0/mlflow/registered-models/alias"
    body = {"name": MODEL, "alias": "staging", "version": version}
    get = f"{uri}/api/2.0/mlflow/registered-models/get"
    codes = {
        "no credentials": httpx.get(get, params={"name": MODEL}).status_code,
        "wrong password": httpx.get(
            get, params={"name": MODEL}, auth=(admin[0], secrets.token_urlsafe(16))
        ).status_code,
        "reader reads the model": httpx.get(get, params={"name": MODEL}, auth=reader).status_code,
        "reader moves an alias": httpx.post(alias, json=body, auth=reader).status_code,
        "admin moves an alias": httpx.post(alias, json=body, auth=admin).status_code,
    }
    expected = {
        "no credentials": 401,
        "wrong password": 401,
        "reader reads the model": 200,
        "reader moves an alias": 403,
        "admin moves an alias": 200,
    }
    for case, code in codes.items():
        record_figure(item, case, code, expected[case], code == expected[case])
    signed_in_ms = median_ms(lambda: httpx.get(get, params={"name": MODEL}, auth=admin))
    health_ms = median_ms(lambda: httpx.get(f"{uri}/health"))
    shown = f"{signed_in_ms:.0f} / {health_ms:.0f}"
    record_figure(item, "signed-in request / /health, median ms", shown, "-", True)
    holder = MlflowClient().get_model_version_by_alias(MODEL, "staging").version
    assert codes == expected
    assert holder == version
