"""SLO rules: one version's request figures against the spec's objectives. Pure functions.

Each objective is judged on its own sample, and only with at least `min_requests` in it:
- `p99_latency_ms`: the p99 latency of answered real-time requests (/predict, /invocations);
- `error_rate`: the share of 5xx (and failed) responses among all requests, /batch included.
A version with too few requests is reported as such and never leads to a decision. The
revert rule itself (a recent promotion, a previous version that met what production breaches)
is applied in `monitoring.decision`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from monitoring.requests import RequestStats
from services.spec import Slo

LATENCY = "p99_latency_ms"
ERRORS = "error_rate"


class SloStatus(StrEnum):
    MET = "met"
    BREACHED = "breached"
    TOO_FEW_REQUESTS = "too-few-requests"
    NOT_MEASURED = "not-measured"  # no request records of the version


@dataclass(frozen=True)
class SloTargets:
    """The spec's objectives (copied so a summary records what was applied)."""

    p99_latency_ms: float
    error_rate: float
    min_requests: int

    @classmethod
    def from_spec(cls, slo: Slo) -> SloTargets:
        return cls(**slo.model_dump())


@dataclass(frozen=True)
class SloCheck:
    """One version against the objectives: per objective, the figure and whether it is met."""

    version: str
    stats: RequestStats | None
    status: SloStatus
    breaches: dict[str, str] = field(default_factory=dict)  # objective -> figures
    met: dict[str, str] = field(default_factory=dict)  # objective -> figures

    @property
    def judged(self) -> bool:
        return self.status in (SloStatus.MET, SloStatus.BREACHED)


def latency_figure(stats: RequestStats) -> str:
    return (
        f"p99 latency {stats.p99_latency_ms:.1f} ms "
        f"({stats.latency_requests} answered real-time requests)"
    )


def error_figure(stats: RequestStats) -> str:
    return (
        f"5xx rate {stats.server_error_rate:.2%} "
        f"({stats.server_errors} of {stats.requests} requests)"
    )


def judge(version: str, stats: RequestStats | None, targets: SloTargets) -> SloCheck:
    """Met, breached, too few requests, or not measured; with the figures of each objective."""
    if stats is None or stats.requests == 0:
        return SloCheck(version, stats, SloStatus.NOT_MEASURED)
    if stats.requests < targets.min_requests:
        return SloCheck(version, stats, SloStatus.TOO_FEW_REQUESTS)
    breaches, met = {}, {}
    if stats.p99_latency_ms is not None and stats.latency_requests >= targets.min_requests:
        text = latency_figure(stats)
        if stats.p99_latency_ms > targets.p99_latency_ms:
            breaches[LATENCY] = f"{text} > {targets.p99_latency_ms:g} ms"
        else:
            met[LATENCY] = f"{text} <= {targets.p99_latency_ms:g} ms"
    text = error_figure(stats)
    if stats.server_error_rate > targets.error_rate:
        breaches[ERRORS] = f"{text} > {targets.error_rate:.2%}"
    else:
        met[ERRORS] = f"{text} <= {targets.error_rate:.2%}"
    status = SloStatus.BREACHED if breaches else SloStatus.MET
    return SloCheck(version, stats, status, breaches, met)


def regressions(production: SloCheck, previous: SloCheck | None) -> list[str]:
    """Objectives production breaches that the previous version met, with both figures."""
    if previous is None or not previous.judged:
        return []
    return [
        f"v{production.version} breaches its SLO: {text}, which previous "
        f"v{previous.version} met ({previous.met[objective]})"
        for objective, text in production.breaches.items()
        if objective in previous.met
    ]


def summary(check: SloCheck, targets: SloTargets) -> str:
    """One line: the figures and the verdict (for tables and the demo)."""
    stats = check.stats
    if stats is None or stats.requests == 0:
        return "no request records"
    p99 = "n/a" if stats.p99_latency_ms is None else f"{stats.p99_latency_ms:.1f} ms"
    verdict = {
        SloStatus.TOO_FEW_REQUESTS: f"not judged: fewer than {targets.min_requests} requests",
        SloStatus.BREACHED: f"breached: {', '.join(check.breaches)}",
        SloStatus.MET: "met",
    }.get(check.status, check.status.value)
    return (
        f"{stats.requests} requests, p99 {p99}, 5xx {stats.server_error_rate:.2%}, "
        f"4xx {stats.client_error_rate:.2%}: {verdict}"
    )
