"""Registered versions of the catalogue's services, as plain rows for tables and JSON."""

from __future__ import annotations

from typing import Any

from mlflow.exceptions import MlflowException

from services.registry import connect
from services.registry_keys import DVC_DATA_MD5_TAG, GIT_COMMIT_TAG, metric_tag
from services.spec import load_spec


def registered_versions(services: list[str]) -> list[dict[str, Any]]:
    """Every registered version of `services`, newest first per service."""
    client = connect()
    rows = []
    for name in services:
        spec = load_spec(name)
        versions = client.search_model_versions(f"name = '{name}'")
        aliases = _aliases(client, name)
        for v in sorted(versions, key=lambda v: -int(v.version)):
            metric = spec.evaluation.metric
            rows.append(
                {
                    "service": name,
                    "version": str(v.version),
                    "aliases": sorted(a for a, n in aliases.items() if n == str(v.version)),
                    "metric": metric,
                    "value": v.tags.get(metric_tag(metric), "?"),
                    GIT_COMMIT_TAG: v.tags.get(GIT_COMMIT_TAG, "?"),
                    DVC_DATA_MD5_TAG: v.tags.get(DVC_DATA_MD5_TAG, "?"),
                }
            )
    return rows


def _aliases(client: Any, name: str) -> dict[str, str]:
    try:
        return dict(client.get_registered_model(name).aliases)
    except MlflowException:  # no registered model yet
        return {}
