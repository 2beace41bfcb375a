"""The rollout gates that compare the candidate's outputs with the stable version's: divergence
and labelled quality. In shadow both scored the same rows (paired on REQUEST_ID); in canary
they answered comparable traffic, different rows (unpaired). Pure: no I/O.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring.performance import live_metrics, resampled_metric
from monitoring.rollout_result import GateResult, Verdict, gate_result
from monitoring.rollout_stats import (
    BOOTSTRAP_RESAMPLES,
    abs_mean_difference_lower_bound,
    abs_rate_difference_lower_bound,
    bootstrap_upper_bound,
    mean_lower_bound,
    wilson_bounds,
)
from services.inference_log import LABEL, PREDICTION, PROBABILITY, REQUEST_ID, SHADOW
from services.spec import RolloutGates, ServiceSpec

DIVERGENCE, QUALITY = "divergence", "quality"


def paired(candidate: pd.DataFrame, stable: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows both variants scored, aligned on REQUEST_ID (one row per id and variant)."""
    first = candidate.drop_duplicates(REQUEST_ID, keep="last").set_index(REQUEST_ID)
    second = stable.drop_duplicates(REQUEST_ID, keep="last").set_index(REQUEST_ID)
    common = first.index.intersection(second.index)
    return first.loc[common].reset_index(), second.loc[common].reset_index()


def _values(frame: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def _method(shadow: bool) -> str:
    if shadow:
        return (
            f"paired on {REQUEST_ID}: Wilson lower bound of the share of differing decisions, "
            "one-sided t lower bound of the mean |difference|"
        )
    return (
        "unpaired: Newcombe (Wilson) lower bound of the |positive-rate difference|, Welch t "
        "lower bound of the |mean difference|"
    )


def divergence_gate(
    spec: ServiceSpec, mode: str, candidate: pd.DataFrame, stable: pd.DataFrame, g: RolloutGates
) -> GateResult:
    """How far the candidate's outputs are from the stable version's (binary: decisions and
    probabilities; regression: predictions relative to the mean |stable prediction|)."""
    shadow, binary = mode == SHADOW, spec.task == "binary"
    if shadow:
        candidate, stable = paired(candidate, stable)
    output = PROBABILITY if binary else PREDICTION
    ours, theirs = _values(candidate, output), _values(stable, output)
    scale = 1.0 if binary else float(np.mean(np.abs(theirs))) if len(theirs) else 0.0
    threshold = f"mean |difference| <= {g.max_prediction_difference:g}" + (
        f", {'decisions differing' if shadow else '|positive-rate difference|'} "
        f"<= {g.max_decision_flips:.2%}"
        if binary
        else " of the mean |stable prediction|"
    )
    figures: dict[str, float | int | None] = {
        "candidate_rows": len(ours),
        "stable_rows": len(theirs),
        "max_difference": g.max_prediction_difference,
    }
    if min(len(ours), len(theirs)) < 2 or scale == 0:
        text = f"{len(ours)} candidate and {len(theirs)} stable rows to compare: too few"
        verdict = Verdict.NOT_JUDGED
        return gate_result(
            DIVERGENCE, verdict, figures, text, threshold, _method(shadow), g.confidence
        )
    if shadow:
        gaps = np.abs(ours - theirs)
        difference, low = float(gaps.mean()), mean_lower_bound(gaps, g.confidence)
    else:
        difference = abs(float(ours.mean()) - float(theirs.mean()))
        low = abs_mean_difference_lower_bound(ours, theirs, g.confidence)
    difference, low = difference / scale, low / scale
    failed = low > g.max_prediction_difference
    figures |= {"difference": difference, "difference_lower_bound": low}
    text = (
        f"{'paired' if shadow else 'unpaired'} on {len(ours)}/{len(theirs)} rows: mean "
        f"|difference| {difference:.4f}{'' if binary else ' of the mean |stable|'} (lower "
        f"bound {low:.4f}) {'>' if failed else '<='} {g.max_prediction_difference:g}"
    )
    if binary:
        share, share_low = _decision_divergence(shadow, candidate, stable, g.confidence)
        failed = failed or share_low > g.max_decision_flips
        figures |= {
            "decision_difference": share,
            "decision_difference_lower_bound": share_low,
            "max_decision_difference": g.max_decision_flips,
        }
        text += (
            f"; {'decisions differing' if shadow else '|positive-rate difference|'} "
            f"{share:.2%} (lower bound {share_low:.2%}) "
            f"{'>' if share_low > g.max_decision_flips else '<='} {g.max_decision_flips:.2%}"
        )
    verdict = Verdict.FAIL if failed else Verdict.PASS
    return gate_result(DIVERGENCE, verdict, figures, text, threshold, _method(shadow), g.confidence)


def _decision_divergence(
    shadow: bool, candidate: pd.DataFrame, stable: pd.DataFrame, confidence: float
) -> tuple[float, float]:
    """Shadow: the share of rows decided otherwise; canary: the |positive-rate difference|;
    each with its one-sided lower bound."""
    ours, theirs = _values(candidate, PREDICTION), _values(stable, PREDICTION)
    if shadow:
        flips = int((ours != theirs).sum())
        return flips / len(ours), wilson_bounds(flips, len(ours), confidence)[0]
    k1, k2 = int((ours == 1).sum()), int((theirs == 1).sum())
    low = abs_rate_difference_lower_bound(k1, len(ours), k2, len(theirs), confidence)
    return abs(k1 / len(ours) - k2 / len(theirs)), low


def quality_gate(
    spec: ServiceSpec, mode: str, candidate: pd.DataFrame, stable: pd.DataFrame, g: RolloutGates
) -> GateResult:
    """The labelled metric of both variants: fails when the candidate is worse by more than
    `max_metric_loss` at `confidence` (bootstrap); not judged before `min_labels` each."""
    metric, shadow = spec.evaluation.metric, mode == SHADOW
    candidate, stable = candidate[candidate[LABEL].notna()], stable[stable[LABEL].notna()]
    if shadow:  # the same rows: one label, one draw of rows for both
        candidate, stable = paired(candidate, stable)
    figures: dict[str, float | int | None] = {
        "candidate_labels": len(candidate),
        "stable_labels": len(stable),
        "max_loss": g.max_metric_loss,
    }
    threshold = f"{metric} at most {g.max_metric_loss:g} worse than stable"
    method = (
        f"{'paired' if shadow else 'unpaired'} percentile bootstrap ({BOOTSTRAP_RESAMPLES} "
        "resamples, fixed seed), one-sided upper bound of the change"
    )
    enough = min(len(candidate), len(stable)) >= g.min_labels
    ours = live_metrics(spec, candidate).get(metric) if enough else None
    theirs = live_metrics(spec, stable).get(metric) if enough else None
    if ours is None or theirs is None:
        text = f"{len(candidate)} candidate and {len(stable)} stable labels: " + (
            f"{metric} undefined (one class)" if enough else f"fewer than {g.min_labels} each"
        )
        return gate_result(
            QUALITY, Verdict.NOT_JUDGED, figures, text, threshold, method, g.confidence
        )
    sign = 1.0 if spec.evaluation.higher_is_better else -1.0  # positive: the candidate is better

    def change_of(first: np.ndarray, second: np.ndarray) -> np.ndarray:
        drawn = resampled_metric(spec, candidate, first) - resampled_metric(spec, stable, second)
        return sign * drawn

    sizes = (len(candidate), len(stable))
    upper = bootstrap_upper_bound(change_of, sizes, shadow, g.confidence)
    change = sign * (ours - theirs)
    failed = upper is not None and upper < -g.max_metric_loss
    figures |= {
        "candidate_metric": ours,
        "stable_metric": theirs,
        "change": change,
        "change_upper_bound": upper,
    }
    bound = "n/a" if upper is None else f"{upper:+.4f}"
    text = (
        f"{metric} candidate {ours:.4f} vs stable {theirs:.4f} on {sizes[0]}/{sizes[1]} labels: "
        f"change {change:+.4f} (upper bound {bound}) {'<' if failed else '>='} "
        f"-{g.max_metric_loss:g}"
    )
    verdict = Verdict.FAIL if failed else Verdict.PASS
    return gate_result(QUALITY, verdict, figures, text, threshold, method, g.confidence)
