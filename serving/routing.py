"""Traffic of a service during a rollout, and which variant answers (or shadows) a request.

The manifest's real-time `user_config` names the stable version (`model_version`) and, during
a rollout, the candidate under `rollout` (`RolloutTraffic`). A request with an `X-Routing-Key`
header goes by a stable hash of the key, so one customer always sees one version; a request
without one goes by a per-replica counter that spreads the weight exactly (within one request
per replica). Pure: the app, the analysis and the tests share it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from services.inference_log import CANARY, SHADOW, STABLE, Variant
from services.spec import RolloutMode, weight_problem

#: `user_config` key of the real-time deployment: the rollout's candidate (absent: none).
ROLLOUT_KEY = "rollout"
ROUTING_HEADER = "x-routing-key"
BUCKETS = 10_000  # weights resolve to 0.01 percentage points
#: A registered version number as the manifest names it (serving.manifest.VERSION_PATTERN).
VERSION_REGEX = r"^[1-9][0-9]{0,8}$"


class RolloutTraffic(BaseModel):
    """The candidate of a rollout as the manifest names it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    candidate: str = Field(pattern=VERSION_REGEX, description="registered version on trial")
    mode: RolloutMode
    weight: float = Field(gt=0, le=100, description="percent of requests")
    step: int | None = Field(default=None, ge=1, description="index in the policy, from 1")
    since: datetime | None = Field(default=None, description="when this step started (UTC)")

    @field_validator("weight")
    @classmethod
    def _check_weight(cls, weight: float, info: ValidationInfo) -> float:
        problem = weight_problem(info.data["mode"], weight) if "mode" in info.data else None
        if problem:
            raise ValueError(problem)
        return weight

    @classmethod
    def parse(cls, raw: Any, where: str) -> RolloutTraffic:
        """Validated traffic; a `ValueError` naming `where` and the field otherwise."""
        try:
            traffic = cls.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(
                "; ".join(
                    f"{'.'.join((where, ROLLOUT_KEY, *map(str, e['loc'])))}: {e['msg']}"
                    for e in exc.errors(include_url=False)
                )
            ) from None
        return traffic

    def config(self) -> dict[str, Any]:
        """The manifest form (plain YAML scalars)."""
        return self.model_dump(mode="json", exclude_none=True)


def bucket(key: str) -> int:
    """A stable bucket in [0, BUCKETS) for a routing key (the same on every replica)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def _threshold(weight: float) -> int:
    return round(weight * BUCKETS / 100)


@dataclass(frozen=True)
class Route:
    """Who answers a request, and whether the candidate also scores it in the shadow."""

    answer: Variant
    shadow: bool = False


STABLE_ROUTE = Route(STABLE)


class Router:
    """The route of each request under one traffic setting (one instance per replica)."""

    def __init__(self, traffic: RolloutTraffic | None) -> None:
        self.traffic = traffic
        self._threshold = 0 if traffic is None else _threshold(traffic.weight)
        self._count = 0

    def _chosen(self, key: str | None) -> bool:
        if key:
            return bucket(key) < self._threshold
        before, self._count = self._count, self._count + 1  # exact share: Bresenham's rule
        return (self._count * self._threshold) // BUCKETS > (before * self._threshold) // BUCKETS

    def route(self, key: str | None = None) -> Route:
        """The route of a request with routing key `key` (None: none given)."""
        if self.traffic is None or not self._chosen(key):
            return STABLE_ROUTE
        return Route(STABLE, shadow=True) if self.traffic.mode == SHADOW else Route(CANARY)
