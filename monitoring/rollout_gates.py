"""The rollout's decision rules: one step's window -> ADVANCE, HOLD or ABORT, with every figure.

Pure (no I/O). The candidate is what `traffic.candidate` served as the canary or the shadow
since the step began, the stable what the stable version answered. Too few candidate requests
holds the step and judges nothing; otherwise any failing gate aborts; otherwise a step younger
than `min_minutes` holds; otherwise it advances. Gates: errors (Wilson bound of the 5xx rate),
latency (order-statistic bound of the p99), divergence and labelled quality
(monitoring.rollout_comparison; quality is not judged before `min_labels` labels per variant,
which never holds a rollout: labels may come days later).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from monitoring.requests import RequestStats, request_stats
from monitoring.rollout_comparison import DIVERGENCE, QUALITY, divergence_gate, quality_gate
from monitoring.rollout_result import (
    GateResult,
    RolloutAnalysis,
    RolloutDecision,
    Verdict,
    gate_result,
)
from monitoring.rollout_stats import quantile_lower_bound, quantile_order_statistic, wilson_bounds
from services.inference_log import (
    CANARY,
    ENDPOINT,
    LATENCY_MS,
    MODEL_VERSION,
    REALTIME_ENDPOINTS,
    SHADOW,
    STABLE,
    STATUS,
    VARIANT,
)
from services.spec import Rollout, RolloutGates, ServiceSpec
from serving.routing import RolloutTraffic

EVIDENCE, ERRORS, LATENCY = "evidence", "errors", "latency"
GATES = (ERRORS, LATENCY, DIVERGENCE, QUALITY)
P99 = 0.99


def sides(frame: pd.DataFrame, stable: str, candidate: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(candidate, stable) rows or records of a window: the candidate's canary or shadow ones
    and the stable version's stable ones."""
    version = frame[MODEL_VERSION].astype(str)
    chosen = (version == str(candidate)) & frame[VARIANT].isin((CANARY, SHADOW))
    return frame[chosen], frame[(version == str(stable)) & (frame[VARIANT] == STABLE)]


def _latencies(records: pd.DataFrame) -> np.ndarray:
    """Latencies of answered real-time requests: the sample `request_stats` takes its p99 of."""
    status = pd.to_numeric(records[STATUS], errors="coerce").fillna(500)
    answered = (status < 400) & records[ENDPOINT].isin(REALTIME_ENDPOINTS)
    return pd.to_numeric(records.loc[answered, LATENCY_MS], errors="coerce").dropna().to_numpy()


def errors_gate(
    candidate: RequestStats, stable: RequestStats, spec: ServiceSpec, g: RolloutGates
) -> GateResult:
    """The candidate's 5xx rate, held to the SLO and to the stable rate plus the allowance."""
    confidence, slo = g.confidence, spec.slo.error_rate
    limit = min(slo, stable.server_error_rate + g.max_error_rate_increase)
    if not stable.requests:
        limit = slo
    low, _ = wilson_bounds(candidate.server_errors, candidate.requests, confidence)
    failed = low > limit
    return gate_result(
        ERRORS,
        Verdict.FAIL if failed else Verdict.PASS,
        {
            "candidate_requests": candidate.requests,
            "candidate_server_errors": candidate.server_errors,
            "candidate_rate": candidate.server_error_rate,
            "candidate_rate_lower_bound": low,
            "stable_requests": stable.requests,
            "stable_rate": stable.server_error_rate,
            "max_rate": limit,
        },
        f"candidate 5xx {candidate.server_errors}/{candidate.requests} = "
        f"{candidate.server_error_rate:.2%} (lower bound {low:.2%}) vs stable "
        f"{stable.server_error_rate:.2%}: bound {'>' if failed else '<='} {limit:.2%}",
        f"5xx rate <= {limit:.2%}: min(SLO {slo:.2%}, stable + {g.max_error_rate_increase:.2%})",
        "one-sided Wilson lower bound of the candidate's 5xx rate",
        confidence,
    )


def latency_gate(
    candidate: RequestStats,
    latencies: np.ndarray,
    stable: RequestStats,
    spec: ServiceSpec,
    g: RolloutGates,
) -> GateResult:
    """The candidate's p99 (of `latencies`, its answered real-time requests), held to the SLO
    and to the stable p99 times the allowed ratio (or plus the allowed increase, if more)."""
    confidence, slo, ratio = g.confidence, spec.slo.p99_latency_ms, g.max_latency_ratio
    increase = g.max_latency_increase_ms
    stable_p99 = stable.p99_latency_ms
    limit = slo if stable_p99 is None else min(slo, max(stable_p99 * ratio, stable_p99 + increase))
    n, p99 = len(latencies), candidate.p99_latency_ms
    k = quantile_order_statistic(n, P99, confidence) if n else 0
    bound = quantile_lower_bound(latencies, P99, confidence) if n else None
    failed = bound is not None and bound > limit
    verdict = Verdict.NOT_JUDGED if bound is None else Verdict.FAIL if failed else Verdict.PASS
    stable_text = "n/a" if stable.p99_latency_ms is None else f"{stable.p99_latency_ms:.1f} ms"
    text = (
        f"candidate p99 {p99:.1f} ms (lower bound {bound:.1f} ms, the {k}th of {n}) vs stable "
        f"{stable_text}: bound {'>' if failed else '<='} {limit:.1f} ms"
        if bound is not None and p99 is not None
        else f"{n} answered real-time candidate requests: too few for a p99 bound"
    )
    return gate_result(
        LATENCY,
        verdict,
        {
            "candidate_latency_requests": n,
            "candidate_p99_ms": p99,
            "candidate_p99_lower_bound_ms": bound,
            "order_statistic": k,
            "stable_p99_ms": stable.p99_latency_ms,
            "max_p99_ms": limit,
        },
        text,
        f"p99 <= {limit:.1f} ms: min(SLO {slo:g} ms, stable p99 x {ratio:g} or + {increase:g} ms)",
        "distribution-free lower bound of the candidate's p99 (order statistic)",
        confidence,
    )


def evidence_gate(
    candidate: RequestStats, stable: RequestStats, minutes: float | None, rollout: Rollout
) -> GateResult:
    """Enough candidate requests and time in the step; failing holds, never aborts."""
    enough = candidate.requests >= rollout.min_requests
    long_enough = minutes is not None and minutes >= rollout.min_minutes
    age = "unknown" if minutes is None else f"{minutes:.1f}"
    text = (
        f"{candidate.requests} candidate requests ({'>=' if enough else '<'} "
        f"{rollout.min_requests}), {stable.requests} stable; {age} minutes in the step "
        f"({'>=' if long_enough else '<'} {rollout.min_minutes:g})"
    )
    return gate_result(
        EVIDENCE,
        Verdict.PASS if enough and long_enough else Verdict.FAIL,
        {
            "candidate_requests": candidate.requests,
            "stable_requests": stable.requests,
            "minutes": minutes,
            "min_requests": rollout.min_requests,
            "min_minutes": rollout.min_minutes,
        },
        text,
        f">= {rollout.min_requests} candidate requests and >= {rollout.min_minutes:g} minutes",
        "counts",
        None,
    )


def _not_judged(name: str, why: str) -> GateResult:
    return gate_result(name, Verdict.NOT_JUDGED, {}, why, "n/a", "n/a", None)


def judge_step(
    spec: ServiceSpec,
    traffic: RolloutTraffic,
    stable: str,
    records: pd.DataFrame,
    predictions: pd.DataFrame,
    now: datetime,
) -> RolloutAnalysis:
    """The decision on one step from its window's request records (REQUEST_COLUMNS) and
    prediction rows (REQUEST_ID, VARIANT, MODEL_VERSION, PREDICTION, PROBABILITY, LABEL)."""
    rollout = spec.promotion.rollout
    if rollout is None:
        raise ValueError(f"{spec.name}: the spec has no rollout policy (promotion.rollout)")
    g = rollout.gates
    ours, theirs = sides(records, stable, traffic.candidate)
    ours_stats, theirs_stats = request_stats(ours), request_stats(theirs)
    minutes = None if traffic.since is None else (now - traffic.since).total_seconds() / 60
    evidence = evidence_gate(ours_stats, theirs_stats, minutes, rollout)
    if ours_stats.requests < rollout.min_requests:
        why = f"too few candidate requests ({ours_stats.requests} < {rollout.min_requests})"
        gates = tuple(_not_judged(name, why) for name in GATES)
        decision, reasons = RolloutDecision.HOLD, (f"{EVIDENCE}: {evidence.text}",)
    else:
        rows, stable_rows = sides(predictions, stable, traffic.candidate)
        gates = (
            errors_gate(ours_stats, theirs_stats, spec, g),
            latency_gate(ours_stats, _latencies(ours), theirs_stats, spec, g),
            divergence_gate(spec, traffic.mode, rows, stable_rows, g),
            quality_gate(spec, traffic.mode, rows, stable_rows, g),
        )
        decision, reasons = _decide(evidence, gates)
    return RolloutAnalysis(
        service=spec.name,
        stable=str(stable),
        candidate=traffic.candidate,
        mode=traffic.mode,
        weight=traffic.weight,
        step=traffic.step,
        since=traffic.since,
        analysed_at=now,
        decision=decision,
        reasons=reasons,
        evidence=evidence,
        gates=gates,
    )


def _decide(
    evidence: GateResult, gates: tuple[GateResult, ...]
) -> tuple[RolloutDecision, tuple[str, ...]]:
    """Judged gates: any failure aborts; else too little time holds; else advance."""
    failed = [f"{g.name}: {g.text}" for g in gates if g.verdict is Verdict.FAIL]
    if failed:
        return RolloutDecision.ABORT, tuple(failed)
    if evidence.verdict is Verdict.FAIL:
        return RolloutDecision.HOLD, (f"{EVIDENCE}: {evidence.text}",)
    passed = ", ".join(g.name for g in gates if g.verdict is Verdict.PASS) or "none"
    reasons = [f"every judged gate passes ({passed}); {evidence.text}"]
    reasons += [f"{g.name} not judged: {g.text}" for g in gates if g.verdict is Verdict.NOT_JUDGED]
    return RolloutDecision.ADVANCE, tuple(reasons)
