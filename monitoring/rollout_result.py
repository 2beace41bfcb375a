"""What the analysis of a rollout step says: a decision, its reasons and every gate's figures."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class RolloutDecision(StrEnum):
    ADVANCE = "advance"  # the next step, or completion after the last
    HOLD = "hold"  # the same step: more evidence needed
    ABORT = "abort"  # all traffic back on the stable version


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NOT_JUDGED = "not-judged"  # too little data for the bound: neither passes nor fails


@dataclass(frozen=True)
class GateResult:
    """One gate: its verdict, the figures behind it, the threshold and how it was judged."""

    name: str
    verdict: Verdict
    figures: dict[str, float | int]
    text: str  # one line with the figures
    threshold: str
    method: str
    confidence: float | None  # of the bound (None: nothing estimated)


def gate_result(
    name: str,
    verdict: Verdict,
    figures: dict[str, float | int | None],
    text: str,
    threshold: str,
    method: str,
    confidence: float | None,
) -> GateResult:
    """A gate result keeping only the figures that were measured (finite numbers)."""
    measured = {k: v for k, v in figures.items() if v is not None and math.isfinite(v)}
    return GateResult(name, verdict, measured, text, threshold, method, confidence)


@dataclass(frozen=True)
class RolloutAnalysis:
    """The analysis of one rollout step. `evidence` failing holds the step; a gate failing
    aborts the rollout."""

    service: str
    stable: str
    candidate: str
    mode: str
    weight: float
    step: int | None
    since: datetime | None
    analysed_at: datetime
    decision: RolloutDecision
    reasons: tuple[str, ...]
    evidence: GateResult
    gates: tuple[GateResult, ...]

    def gate(self, name: str) -> GateResult:
        """The gate (or the evidence) called `name`."""
        return next(g for g in (self.evidence, *self.gates) if g.name == name)
