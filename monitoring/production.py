"""The service in production: the version the manifest on main names (what runs), what the
registry says about it (metrics, promotion time, the `previous` alias), and the reference
sample logged with it."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from services.registry import PREVIOUS, aliased_version
from services.registry_keys import METRIC_TAG_PREFIX, PROMOTED_AT_TAG, REFERENCE_ARTIFACT
from serving.gitops import version_on_main

log = logging.getLogger(__name__)


class NotInProduction(LookupError):
    """The service has no version holding the `production` alias."""


@dataclass(frozen=True)
class VersionInfo:
    version: str
    run_id: str
    metrics: dict[str, float]  # from the `metric.<name>` tags


@dataclass(frozen=True)
class Production:
    service: str
    current: VersionInfo
    previous: VersionInfo | None
    promoted_at: datetime
    promoted_at_source: str  # "tag" or "registration time (no promoted_at tag)"
    alias_note: str | None = None  # how the `production` alias disagrees with the manifest

    def hours_since_promotion(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - self.promoted_at).total_seconds() / 3600


def _metrics(version: ModelVersion) -> dict[str, float]:
    out = {}
    for key, value in (version.tags or {}).items():
        if key.startswith(METRIC_TAG_PREFIX):
            try:
                out[key.removeprefix(METRIC_TAG_PREFIX)] = float(value)
            except ValueError:
                log.warning("tag %s=%r of version %s is not a number", key, value, version.version)
    return out


def _info(version: ModelVersion) -> VersionInfo:
    return VersionInfo(str(version.version), str(version.run_id), _metrics(version))


def promotion_time(version: ModelVersion) -> tuple[datetime, str]:
    """The `promoted_at` tag; without it the registration time, a lower bound (an alias is
    set after registration), so a version is never taken as more recently promoted than it is."""
    raw = (version.tags or {}).get(PROMOTED_AT_TAG)
    if raw:
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), "tag"
        except ValueError:
            log.warning("version %s: %s=%r is not ISO time", version.version, PROMOTED_AT_TAG, raw)
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC)
    return created, f"registration time (no {PROMOTED_AT_TAG} tag)"


def load_production(client: MlflowClient, service: str) -> Production:
    """The version the manifest on main names (what runs); the `production` alias is only
    compared with it, and a disagreement is reported."""
    version, note = version_on_main(client, service)
    if version is None:
        raise NotInProduction(
            f"{service}: the manifest on main names no version; promote one first"
        )
    if note:
        log.warning("%s: %s; measuring v%s", service, note, version)
    current = client.get_model_version(service, version)
    previous = aliased_version(client, service, PREVIOUS)
    promoted_at, source = promotion_time(current)
    return Production(
        service=service,
        current=_info(current),
        previous=None if previous is None else _info(previous),
        promoted_at=promoted_at,
        promoted_at_source=source,
        alias_note=note,
    )


def mark_promoted(
    client: MlflowClient, service: str, version: str, when: datetime | None = None
) -> None:
    """Record when `version` became production (the tag `promote` sets with the alias)."""
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    client.set_model_version_tag(service, version, PROMOTED_AT_TAG, moment.isoformat())


def load_reference(tracking_uri: str, run_id: str) -> pd.DataFrame:
    """The reference sample (features, target, predictions) logged with a model version."""
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=tmp, tracking_uri=tracking_uri
        )
        return pd.read_parquet(Path(path))
