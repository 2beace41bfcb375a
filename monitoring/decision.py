"""Decision rules: measured drift and performance + the spec's thresholds -> what to do.

Pure functions over small typed values, so the rules are tested on constructed numbers.
Precedence: SLO revert > insufficient-data > retrain > revert > none.

- SLO revert: production was promoted within `revert_window_hours`, and breaches an SLO
  (`monitoring.slo`) that the previous version met, both judged on enough requests. It comes
  first: a version that fails or slows down requests goes back whatever the data says (with
  every request failing, there are no prediction rows to measure drift on).
- insufficient-data: fewer rows than `min_rows` in the window (reported, never an error).
- retrain: the share of drifted input features reaches `feature_drift_share` (the world changed).
- revert: production was promoted within `revert_window_hours`, a `previous` version exists,
  and either the prediction drift reaches `prediction_drift_threshold` while feature drift
  stays below its own threshold (the model changed, not the data), or the labelled
  performance is worse than the previous version's registered metric by `performance_margin`.
- none: otherwise.

An SLO breach that leads to no revert (outside the window, no previous version, or one that was
not judged or breached it too) is reported in the notes and in `slo_breaches`; too few requests
are reported, never a decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from monitoring.requests import RequestStats
from monitoring.slo import SloCheck, SloStatus, SloTargets, judge, regressions
from services.spec import Monitoring, Slo


class Action(StrEnum):
    INSUFFICIENT_DATA = "insufficient-data"
    RETRAIN = "retrain"
    REVERT = "revert"
    NONE = "none"


@dataclass(frozen=True)
class Thresholds:
    """The spec's monitoring thresholds (copied so a summary records what was applied)."""

    feature_drift_share: float
    prediction_drift_threshold: float
    column_drift_threshold: float
    min_rows: int
    revert_window_hours: float
    performance_margin: float
    slo: SloTargets = field(default_factory=lambda: SloTargets.from_spec(Slo()))

    @classmethod
    def from_spec(cls, monitoring: Monitoring, slo: Slo) -> Thresholds:
        return cls(**monitoring.model_dump(), slo=SloTargets.from_spec(slo))


@dataclass(frozen=True)
class Performance:
    """The evaluation metric of the production version: live (labelled) and registered."""

    metric: str
    higher_is_better: bool
    live: float | None  # None: too few labels to measure
    registered: float | None  # production version's `metric.<name>` tag
    previous: float | None  # previous version's tag (None: no previous version)

    def shortfall(self, bar: float | None) -> float | None:
        """How much worse the live value is than `bar` (positive = worse), if both exist."""
        if self.live is None or bar is None:
            return None
        return bar - self.live if self.higher_is_better else self.live - bar


@dataclass(frozen=True)
class Measurements:
    """What the monitor measured for one service over one window."""

    rows: int
    feature_drift_share: float | None
    drifted_columns: int
    total_columns: int
    prediction_drift: float | None
    performance: Performance
    production_version: str
    previous_version: str | None
    hours_since_promotion: float | None
    requests: RequestStats | None = None  # the production version's request records
    previous_requests: RequestStats | None = None  # the previous version's (its baseline)


@dataclass(frozen=True)
class Decision:
    action: Action
    reasons: tuple[str, ...]
    notes: tuple[str, ...] = ()
    slo_breaches: tuple[str, ...] = ()  # the production version's, whatever the action


def slo_checks(m: Measurements, t: Thresholds) -> tuple[SloCheck, SloCheck | None]:
    """The production version and the previous one against the SLOs."""
    previous = m.previous_version
    return (
        judge(m.production_version, m.requests, t.slo),
        None if previous is None else judge(previous, m.previous_requests, t.slo),
    )


def decide(m: Measurements, t: Thresholds) -> Decision:
    """Apply the rules in order of precedence; every decision says why."""
    production, previous = slo_checks(m, t)
    breaches = tuple(production.breaches.values())
    slo_revert = regressions(production, previous) if recently_promoted(m, t) else []
    if slo_revert:
        return Decision(Action.REVERT, (*slo_revert, _revert_context(m, t)), (), breaches)
    slo_notes = tuple(_slo_notes(m, t, production, previous))
    if m.rows < t.min_rows:
        return Decision(
            Action.INSUFFICIENT_DATA,
            (f"{m.rows} rows in the window, fewer than min_rows {t.min_rows}",),
            slo_notes,
            breaches,
        )
    notes = (*_notes(m, t), *slo_notes)
    feature_drift = _feature_drift(m, t)
    if feature_drift is not None:
        return Decision(Action.RETRAIN, (feature_drift,), notes, breaches)
    revert = _revert_reasons(m, t)
    if revert:
        return Decision(Action.REVERT, tuple(revert), notes, breaches)
    return Decision(Action.NONE, tuple(_none_reasons(m, t)), notes, breaches)


def _slo_notes(
    m: Measurements, t: Thresholds, production: SloCheck, previous: SloCheck | None
) -> list[str]:
    """What the SLOs say when they decide nothing: too few requests, or a breach and why it
    is only reported."""
    version = f"v{m.production_version}"
    if production.status is SloStatus.NOT_MEASURED:
        return [f"SLOs not judged: no request records of {version} in the window"]
    if production.status is SloStatus.TOO_FEW_REQUESTS:
        count = 0 if production.stats is None else production.stats.requests
        return [
            f"SLOs not judged: {count} requests of {version} in the window, "
            f"fewer than min_requests {t.slo.min_requests}"
        ]
    if production.status is SloStatus.MET:
        return []
    if not recently_promoted(m, t):
        why = f"promoted outside the {t.revert_window_hours:g} h revert window"
    elif previous is None:
        why = "no previous version to revert to"
    elif not previous.judged:
        why = f"previous v{previous.version} not judged ({previous.status.value})"
    else:
        why = f"previous v{previous.version} breached it too"
    return [
        f"SLO breached by {version}: {text}; reported only ({why})"
        for text in production.breaches.values()
    ]


def _feature_drift(m: Measurements, t: Thresholds) -> str | None:
    share = m.feature_drift_share
    if share is None or share < t.feature_drift_share:
        return None
    return (
        f"feature drift share {share:.2f} >= {t.feature_drift_share:.2f} "
        f"({m.drifted_columns} of {m.total_columns} features drifted)"
    )


def recently_promoted(m: Measurements, t: Thresholds) -> bool:
    hours = m.hours_since_promotion
    return hours is not None and hours <= t.revert_window_hours


def prediction_drift_alone(m: Measurements, t: Thresholds) -> bool:
    """Predictions drifted while the inputs did not: the model changed, not the data."""
    share = m.feature_drift_share or 0.0
    drift = m.prediction_drift
    return (
        drift is not None
        and drift >= t.prediction_drift_threshold
        and (share < t.feature_drift_share)
    )


def worse_than_previous(m: Measurements, t: Thresholds) -> bool:
    shortfall = m.performance.shortfall(m.performance.previous)
    return shortfall is not None and shortfall > t.performance_margin


def _revert_reasons(m: Measurements, t: Thresholds) -> list[str]:
    if not recently_promoted(m, t) or m.previous_version is None:
        return []
    triggers = []
    if prediction_drift_alone(m, t):
        triggers.append(
            f"prediction drift {m.prediction_drift:.3f} >= {t.prediction_drift_threshold:.3f} "
            f"while feature drift share {m.feature_drift_share or 0.0:.2f} "
            f"< {t.feature_drift_share:.2f}"
        )
    if worse_than_previous(m, t):
        p = m.performance
        triggers.append(
            f"live {p.metric} {p.live:.4f} is worse than previous v{m.previous_version}'s "
            f"{p.previous:.4f} by more than the margin {t.performance_margin}"
        )
    if not triggers:
        return []
    return [*triggers, _revert_context(m, t)]


def _revert_context(m: Measurements, t: Thresholds) -> str:
    return (
        f"production v{m.production_version} was promoted {m.hours_since_promotion:.1f} h ago "
        f"(window {t.revert_window_hours:g} h); previous version is v{m.previous_version}"
    )


def _none_reasons(m: Measurements, t: Thresholds) -> list[str]:
    share = m.feature_drift_share
    reasons = [
        "feature drift not measured"
        if share is None
        else f"feature drift share {share:.2f} < {t.feature_drift_share:.2f}"
    ]
    if m.prediction_drift is not None:
        side = ">=" if m.prediction_drift >= t.prediction_drift_threshold else "<"
        reasons.append(
            f"prediction drift {m.prediction_drift:.3f} {side} {t.prediction_drift_threshold:.3f}"
        )
    if not recently_promoted(m, t):
        when = (
            "unknown" if m.hours_since_promotion is None else f"{m.hours_since_promotion:.1f} h ago"
        )
        reasons.append(
            f"production v{m.production_version} promoted {when}, "
            f"outside the {t.revert_window_hours:g} h revert window"
        )
    elif m.previous_version is None:
        reasons.append("no previous version to revert to")
    elif m.performance.live is None:
        reasons.append(f"live {m.performance.metric} not measured (too few labels, or one class)")
    else:
        reasons.append(
            f"live {m.performance.metric} {m.performance.live:.4f} is within the margin of "
            f"previous v{m.previous_version}'s {_fmt(m.performance.previous)}"
        )
    return reasons


def _notes(m: Measurements, t: Thresholds) -> list[str]:
    """Observations no rule acts on, worth a human look (e.g. concept drift)."""
    p = m.performance
    shortfall = p.shortfall(p.registered)
    if shortfall is not None and shortfall > t.performance_margin:
        return [
            f"live {p.metric} {p.live:.4f} is worse than the registered {p.registered:.4f} "
            f"by more than {t.performance_margin}: labels may have changed meaning "
            "(concept drift); inspect before retraining"
        ]
    return []


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
