"""Helpers of the rollout tests: a policy in the copy's spec, traffic, and the logs it leaves."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import yaml

from monitoring.requests import read_requests
from monitoring.window import read_since
from services.inference_log import MODEL_VERSION, PREDICTIONS_KIND, VARIANT
from services.settings import get_settings
from services.spec import SPEC_FILE
from tests.load import predict_body

# Three steps and no minimum time, so a test walks them in seconds: the minimum requests
# per step are the spec's default evidence.
POLICY: dict[str, Any] = {
    "steps": [
        {"mode": "shadow", "weight": 100},
        {"mode": "canary", "weight": 10},
        {"mode": "canary", "weight": 50},
    ],
    "min_requests": 200,
    "min_minutes": 0,
}
BODIES = 20  # distinct request bodies: the candidate and stable compared on varied rows


@contextlib.contextmanager
def rollout_policy(repo: Path, service: str, policy: dict[str, Any] = POLICY) -> Iterator[None]:
    """`service`'s spec in the repository copy with a rollout policy, restored on exit."""
    path = repo / "services" / service / SPEC_FILE
    saved = path.read_text()
    raw = yaml.safe_load(saved)
    raw["promotion"]["rollout"] = policy
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        yield
    finally:
        path.write_text(saved)


def risky_countries_are_fraud(split: pd.DataFrame) -> pd.DataFrame:
    """Corrupted labels: every transaction from a medium- or high-risk country is fraud (a rule
    a model learns, so its own test metric passes the gates; a fifth of its decisions differ)."""
    target = "is_fraud"
    return split.assign(**{target: split[target].where(split["country_risk"] == "low", 1)})


def without_rollout_policy(repo: Path, service: str) -> None:
    """Drop `service`'s rollout policy from the spec in `repo`: a release serves it at once."""
    path = repo / "services" / service / SPEC_FILE
    raw = yaml.safe_load(path.read_text())
    raw["promotion"].pop("rollout", None)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def send(service: str, count: int, rows: int = 1, key: str | None = None) -> dict[str, int]:
    """`count` healthy /predict requests, each one of BODIES bodies drawn at random (cycling
    through them would line bodies up with the canary's exact every n-th request); answers
    per version."""
    bodies = [predict_body(service, rows, seed=seed) for seed in range(BODIES)]
    draw = random.Random(count)
    headers = {"x-routing-key": key} if key else {}
    answered: dict[str, int] = {}
    with httpx.Client(base_url=get_settings().serve_url, timeout=60) as http:
        for _ in range(count):
            body = draw.choice(bodies)
            response = http.post(f"/{service}/predict", json=body, headers=headers)
            assert response.status_code == 200, response.text[:300]
            version = response.json()[MODEL_VERSION]
            answered[version] = answered.get(version, 0) + 1
    return answered


def recent(hours: float = 1.0) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


def records_of(service: str, version: str, variant: str, since: datetime) -> pd.DataFrame:
    frame = read_requests(get_settings().inference_log_uri, service, since)
    chosen = (frame[MODEL_VERSION].astype(str) == version) & (frame[VARIANT] == variant)
    return frame[chosen]


def rows_of(service: str, since: datetime) -> pd.DataFrame:
    return read_since(get_settings().inference_log_uri, service, PREDICTIONS_KIND, since)


def wait_for_records(
    service: str, version: str, variant: str, expected: int, since: datetime, timeout_s: float = 40
) -> pd.DataFrame:
    """The request records of `version` as `variant`, once at least `expected` are flushed."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = records_of(service, version, variant, since)
        if len(found) >= expected or time.monotonic() > deadline:
            assert len(found) >= expected, f"{len(found)} of {expected} {variant} records"
            return found
        time.sleep(1)
