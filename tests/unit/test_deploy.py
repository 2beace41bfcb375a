"""serving.deploy reads Ray's Serve REST answers with Ray's published schema models.

The payloads are built from `ray.serve.schema` and serialised the way Ray's controller
answers GET /api/serve/applications/ (`_get_user_facing_json_serializable_dict`).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from ray.serve.schema import (
    APIType,
    ApplicationDetails,
    ApplicationStatus,
    DeploymentDetails,
    DeploymentSchema,
    DeploymentStatus,
    DeploymentStatusTrigger,
    ReplicaDetails,
    ReplicaState,
    ServeInstanceDetails,
)
from typer.testing import CliRunner

from mlops.cli import app
from services.inference_log import MODEL_VERSION
from serving import deploy
from serving.manifest import BATCH, REALTIME

pytestmark = pytest.mark.unit
DASHBOARD = "http://127.0.0.1:59265"
SERVE = "http://127.0.0.1:59000"
SERVICE = "fraud-detection"


def replica(number: int, state: ReplicaState) -> ReplicaDetails:
    return ReplicaDetails(
        replica_id=f"replica-{number}",
        state=state,
        pid=1000 + number,
        start_time_s=1.0,
        actor_name=f"SERVE_REPLICA::{SERVICE}#{REALTIME}#{number}",
    )


def deployment(
    name: str, replicas: list[ReplicaDetails], status: DeploymentStatus, target: int
) -> DeploymentDetails:
    return DeploymentDetails(
        name=name,
        status=status,
        status_trigger=DeploymentStatusTrigger.CONFIG_UPDATE_COMPLETED,
        message="",
        deployment_config=DeploymentSchema(name=name),
        target_num_replicas=target,
        required_resources={"CPU": 0.25},
        replicas=replicas,
    )


def application(
    deployments: list[DeploymentDetails],
    status: ApplicationStatus = ApplicationStatus.RUNNING,
    message: str = "",
) -> ApplicationDetails:
    return ApplicationDetails(
        name=SERVICE,
        route_prefix=f"/{SERVICE}",
        docs_path=None,
        status=status,
        message=message,
        last_deployed_time_s=1.0,
        source=APIType.DECLARATIVE,
        deployments={d.name: d for d in deployments},
        external_scaler_enabled=False,
    )


def ray_answer(*apps: ApplicationDetails) -> dict[str, Any]:
    """The JSON body Ray's dashboard sends for these applications."""
    details = ServeInstanceDetails(proxies={}, applications={a.name: a for a in apps})
    return json.loads(
        json.dumps(details._get_user_facing_json_serializable_dict(exclude_unset=True))
    )


TWO_RUNNING = application(
    [
        deployment(
            REALTIME,
            [replica(1, ReplicaState.RUNNING), replica(2, ReplicaState.RUNNING)],
            DeploymentStatus.HEALTHY,
            2,
        ),
        deployment(BATCH, [], DeploymentStatus.HEALTHY, 0),
    ]
)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Ray's dashboard and the serve port, answered in-process: append answers to the list
    (the last one stays)."""
    monkeypatch.setenv("MLOPS_DASHBOARD_URL", DASHBOARD)
    monkeypatch.setenv("MLOPS_SERVE_URL", SERVE)
    answers: list[dict[str, Any]] = []

    def get(url: str, **_: Any) -> httpx.Response:
        request = httpx.Request("GET", url)
        if url == f"{DASHBOARD}/api/serve/applications/":
            body = answers.pop(0) if len(answers) > 1 else answers[0]
            return httpx.Response(200, json=body, request=request)
        if url == f"{SERVE}/{SERVICE}/health":
            health = {"service": SERVICE, MODEL_VERSION: "3", "ready": True, "error": None}
            return httpx.Response(200, json=health, request=request)
        raise httpx.ConnectError(f"nothing listens at {url}", request=request)

    monkeypatch.setattr(httpx, "get", get)
    return answers


def test_status_counts_live_replicas_by_state(cluster):
    starting = deployment(
        REALTIME,
        [replica(1, ReplicaState.RUNNING), replica(2, ReplicaState.STARTING)],
        DeploymentStatus.UPSCALING,
        2,
    )
    cluster.append(ray_answer(application([starting])))
    (status,) = deploy.status(with_health=False)
    assert status.name == SERVICE and status.status == "RUNNING"
    realtime = status.deployments[REALTIME]
    assert realtime.status == "UPSCALING"
    assert realtime.replicas == {"RUNNING": 1, "STARTING": 1}
    assert realtime.target_replicas == 2


def test_serve_status_shows_the_replica_count_of_each_deployment(cluster):
    cluster.append(ray_answer(TWO_RUNNING))
    runner = CliRunner()
    table = runner.invoke(app, ["serve", "status"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert f"{REALTIME}: HEALTHY (running=2)" in table.stdout
    assert f"{BATCH}: HEALTHY," not in table.stdout  # no replicas: no count
    shown = runner.invoke(app, ["serve", "status", "--json"])
    assert shown.exit_code == 0, shown.output
    (entry,) = json.loads(shown.stdout)
    assert entry["deployments"][REALTIME]["replicas"] == {"RUNNING": 2}
    assert entry["deployments"][BATCH]["replicas"] == {}
    assert entry["health"][MODEL_VERSION] == "3"


def test_wait_until_running_waits_for_healthy_deployments(cluster, monkeypatch):
    monkeypatch.setattr(deploy.time, "sleep", lambda _: None)
    updating = deployment(
        REALTIME, [replica(1, ReplicaState.STARTING)], DeploymentStatus.UPDATING, 1
    )
    cluster.extend(
        [
            ray_answer(application([updating], ApplicationStatus.DEPLOYING)),
            ray_answer(application([updating])),  # running, but a deployment still updating
            ray_answer(TWO_RUNNING),
        ]
    )
    (running,) = deploy.wait_until_running([SERVICE], timeout_s=60)
    assert running.deployments[REALTIME].replicas == {"RUNNING": 2}
    assert not cluster[1:]  # every answer was read


def test_wait_until_running_stops_at_a_failed_application(cluster):
    failed = application([], ApplicationStatus.DEPLOY_FAILED, "ImportError: no module 'x'")
    cluster.append(ray_answer(failed))
    with pytest.raises(deploy.DeployError, match=f"{SERVICE}: DEPLOY_FAILED ImportError"):
        deploy.wait_until_running([SERVICE], timeout_s=60)


def test_an_answer_outside_ray_schema_is_a_clear_error(cluster):
    answer = ray_answer(TWO_RUNNING)
    answer["applications"][SERVICE]["deployments"][REALTIME]["replicas"][0]["state"] = "DANCING"
    cluster.append(answer)
    with pytest.raises(deploy.DeployError, match="schema of this environment's Ray"):
        deploy.applications()


def test_an_unreachable_dashboard_is_a_clear_error(cluster, monkeypatch):
    monkeypatch.setenv("MLOPS_DASHBOARD_URL", "http://127.0.0.1:1")
    with pytest.raises(deploy.DeployError, match=r"not reachable.*mlops stack up"):
        deploy.status()


def test_the_deployers_api_key_and_settings_reach_every_application(monkeypatch):
    from services.settings import SERVING_RUNTIME_ENV
    from serving.auth import API_KEY_ENV

    monkeypatch.setenv(API_KEY_ENV, "k-123")
    monkeypatch.setenv(SERVING_RUNTIME_ENV, "xgboost")
    values = deploy.runtime_env_vars()
    assert values[API_KEY_ENV] == "k-123" and values[SERVING_RUNTIME_ENV] == "xgboost"
    monkeypatch.delenv(API_KEY_ENV)
    assert API_KEY_ENV not in deploy.runtime_env_vars()
