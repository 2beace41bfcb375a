"""A served version is self-contained: the spec it was trained with decides its answers.

Editing the model-shaping parts of `service.yaml` (a category, the decision threshold, a
feature) changes nothing that runs, even after every application is rebuilt from scratch (as
a restart or a code deploy does), until a version trained with the edit is promoted.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from mlops.processes import wait_until
from services.ray_access import auth_headers
from services.registry import PREVIOUS, PRODUCTION
from services.settings import get_settings
from services.spec import load_spec
from serving.deploy import DeployError, applications, deploy
from serving.manifest import manifest_path, sync_with_catalogue
from serving.promote import promote
from tests.load import predict_body

pytestmark = pytest.mark.integration
SERVICE = "fraud-detection"
NEW_CATEGORY = "crypto"
PIPELINE_OUTPUTS = (f"data/{SERVICE}/prepared", f"models/{SERVICE}", f"metrics/{SERVICE}")


def post(body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{get_settings().serve_url}/{SERVICE}/predict", json=body, timeout=30)


def answers(response: httpx.Response) -> list[tuple[int, float]]:
    assert response.status_code == 200, response.text
    return [(p["prediction"], p["probability"]) for p in response.json()["predictions"]]


def with_new_category(body: dict[str, Any]) -> dict[str, Any]:
    first = {**body["records"][0], "merchant_category": NEW_CATEGORY}
    return {"records": [first]}


def serve_controller_alive() -> bool:
    from ray.util.state import list_actors

    alive = [("class_name", "=", "ServeController"), ("state", "=", "ALIVE")]
    return bool(list_actors(address=get_settings().dashboard_url, filters=alive))


def serve_shut_down() -> bool:
    """No application and no Serve controller. While the controller exits, the dashboard
    answers 500 (its call to the dying actor fails): still shutting down, not an error."""
    try:
        return not applications() and not serve_controller_alive()
    except DeployError:
        return False


def rebuild_applications(timeout_s: float = 120.0) -> None:
    """Every application deleted (and Serve's controller gone: the DELETE answers before it
    has exited when the graceful shutdown outlasts Ray's 30 s) and deployed again from the
    unchanged manifest."""
    settings = get_settings()
    response = httpx.delete(
        f"{settings.dashboard_url}/api/serve/applications/",
        headers=auth_headers(settings),
        timeout=120,
    )
    response.raise_for_status()
    wait_until(serve_shut_down, "Serve's shutdown", timeout_s)
    deploy(manifest_path())


@pytest.fixture
def catalogue_edits(served, repo: Path, tmp_path: Path) -> Iterator[Path]:
    """service.yaml of the service, its pipeline outputs, aliases and served version restored
    afterwards."""
    spec_file = repo / "services" / SERVICE / "service.yaml"
    original = spec_file.read_text()
    for relative in PIPELINE_OUTPUTS:
        shutil.copytree(repo / relative, tmp_path / relative)
    client = MlflowClient(get_settings().tracking_uri)
    aliases = dict(client.get_registered_model(SERVICE).aliases)
    yield spec_file
    spec_file.write_text(original)
    for relative in PIPELINE_OUTPUTS:
        shutil.rmtree(repo / relative)
        shutil.copytree(tmp_path / relative, repo / relative)
    promote(f"{SERVICE}@v{served[SERVICE]}")
    for alias in (PRODUCTION, PREVIOUS):
        if alias in aliases:
            client.set_registered_model_alias(SERVICE, alias, aliases[alias])


def test_edits_of_service_yaml_change_nothing_until_a_version_trained_with_them_serves(
    served, catalogue_edits: Path
):
    from monitoring.monitor import monitor_service
    from training.data import prepare
    from training.evaluate import evaluate
    from training.register import register
    from training.train import train

    spec_file, first = catalogue_edits, served[SERVICE]
    trained_with = load_spec(SERVICE)
    body = predict_body(SERVICE, rows=20, seed=5)
    before = answers(post(body))
    assert post(with_new_category(body)).status_code == 422

    # a feature added to the file: the monitor still measures the production version's columns
    original = spec_file.read_text()
    spec_file.write_text(
        original.replace(
            "  - {name: card_present, type: boolean}\n",
            "  - {name: card_present, type: boolean}\n  - {name: loyalty_member, type: boolean}\n",
        )
    )
    assert len(load_spec(SERVICE).features) == len(trained_with.features) + 1
    measured = monitor_service(SERVICE).measurements
    assert measured.total_columns == len(trained_with.features)

    # a new category and another threshold: the same version answers the same after a rebuild
    edited = original.replace("gambling, other]", f"gambling, other, {NEW_CATEGORY}]").replace(
        "decision_threshold: 0.5", "decision_threshold: 0.05"
    )
    assert edited.count(NEW_CATEGORY) == 1 and "decision_threshold: 0.05" in edited
    spec_file.write_text(edited)
    sync_with_catalogue(manifest_path())  # `mlops render manifest`: deployment settings only
    rebuild_applications()
    assert answers(post(body)) == before
    refused = post(with_new_category(body))
    assert refused.status_code == 422 and "merchant_category" in refused.text, refused.text

    # a version trained with the edit brings its rules when it is promoted
    spec = load_spec(SERVICE)
    prepare(spec)
    train(spec)
    evaluate(spec)
    second = register(spec)["version"]
    promote(f"{SERVICE}@v{second}")
    response = post(body)
    assert response.json()["model_version"] == second != first
    now = answers(response)
    assert all(label == int(probability >= 0.05) for label, probability in now)
    assert any(0.05 <= probability < 0.5 for _, probability in now)  # the threshold shows
    assert post(with_new_category(body)).status_code == 200
