"""The MLflow model registry as the hand-off between training, serving and monitoring."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.pyfunc import FLAVOR_NAME
from mlflow.pyfunc.model import CONFIG_KEY_ARTIFACT_RELATIVE_PATH, CONFIG_KEY_ARTIFACTS

from services.settings import get_settings

PRODUCTION = "production"
PREVIOUS = "previous"


class RegistryUnavailable(RuntimeError):
    """The MLflow tracking server cannot be reached."""


def check_server(tracking_uri: str, timeout_s: float = 3.0) -> None:
    """Fail with a clear message when an HTTP tracking server is down."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout_s):
            return
    except (urllib.error.URLError, OSError) as exc:
        raise RegistryUnavailable(
            f"MLflow tracking server {tracking_uri} is not reachable ({exc}); "
            "start the local stack with `mlops stack up` or set MLFLOW_TRACKING_URI"
        ) from None


def connect() -> MlflowClient:
    """Point MLflow at the configured tracking server (checked) and return a client."""
    uri = get_settings().tracking_uri
    check_server(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def model_uri(service: str, version: str | int) -> str:
    return f"models:/{service}/{version}"


def download_model_artifacts(
    service: str, version: str, artifacts: Iterable[str], into: Path
) -> dict[str, str]:
    """Download those of the pyfunc artifacts named `artifacts` (e.g. the booster and the
    spec) that version `version` of `service` has into the folder `into`, and nothing else of
    the model; returns the file name of each there."""
    source = connect().get_model_version_download_uri(service, version).rstrip("/")
    stored = Model.load(source).flavors[FLAVOR_NAME][CONFIG_KEY_ARTIFACTS]
    return {
        name: Path(
            download_artifacts(
                artifact_uri=f"{source}/{stored[name][CONFIG_KEY_ARTIFACT_RELATIVE_PATH]}",
                dst_path=str(into),
            )
        ).name
        for name in artifacts
        if name in stored
    }


def aliased_version(client: MlflowClient, service: str, alias: str) -> ModelVersion | None:
    """The version holding `alias` (production, previous), or None when no version does."""
    try:
        return client.get_model_version_by_alias(service, alias)
    except MlflowException:
        return None


def aliased_number(client: MlflowClient, service: str, alias: str) -> str | None:
    """The number ("3") of the version holding `alias`, or None when no version does."""
    version = aliased_version(client, service, alias)
    return None if version is None else str(version.version)
