"""The rollout's decision rules on constructed step windows: every gate advances, holds and
aborts on the figures the design names (monitoring.rollout_gates)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitoring.rollout_result import RolloutDecision, Verdict
from services.inference_log import CANARY, PREDICTION, SHADOW, STABLE
from services.spec import load_spec
from tests.constructed import NOW, prediction_rows, with_rollout
from tests.constructed import fast_latencies as fast
from tests.constructed import fraud_scores as scores
from tests.constructed import judged_step as judge

pytestmark = pytest.mark.unit

GATES = ["errors", "latency", "divergence", "quality"]


def wilson_low(k: int, n: int, confidence: float = 0.95) -> float:
    """Wilson's score lower bound, written out."""
    z, p = stats.norm.ppf(confidence), k / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


# evidence


def test_a_healthy_canary_advances_with_every_gate_judged():
    analysis = judge()
    assert analysis.decision is RolloutDecision.ADVANCE
    assert [g.name for g in analysis.gates] == GATES
    assert [g.verdict for g in analysis.gates[:3]] == [Verdict.PASS] * 3
    assert analysis.gate("quality").verdict is Verdict.NOT_JUDGED  # no labels: never holds
    assert analysis.evidence.figures["candidate_requests"] == 400
    assert analysis.evidence.figures["stable_requests"] == 2_000
    assert analysis.evidence.figures["minutes"] == pytest.approx(30.0)
    assert analysis.reasons[0].startswith("every judged gate passes (errors, latency, divergence)")
    assert any("quality not judged: 0 candidate and 0 stable labels" in r for r in analysis.reasons)


def test_too_few_candidate_requests_hold_without_judging_a_gate():
    analysis = judge(candidate_latency=fast(150, 1), candidate_errors=40)  # 27% failing
    assert analysis.decision is RolloutDecision.HOLD
    assert {g.verdict for g in analysis.gates} == {Verdict.NOT_JUDGED}
    assert analysis.reasons == (
        "evidence: 150 candidate requests (< 200), 2000 stable; 30.0 minutes in the step (>= 10)",
    )


def test_too_little_time_holds_a_step_whose_gates_pass():
    analysis = judge(since=NOW - timedelta(minutes=4))
    assert analysis.decision is RolloutDecision.HOLD
    assert [g.verdict for g in analysis.gates[:3]] == [Verdict.PASS] * 3
    assert analysis.reasons == (
        "evidence: 400 candidate requests (>= 200), 2000 stable; 4.0 minutes in the step (< 10)",
    )


def test_a_failing_gate_aborts_even_before_the_minutes_are_up():
    analysis = judge(candidate_errors=40, since=NOW - timedelta(minutes=4))
    assert analysis.decision is RolloutDecision.ABORT


# errors


def test_errors_pass_when_the_bound_stays_under_stable_plus_the_allowance():
    analysis = judge(candidate_errors=1)  # 0.25%, stable 0%: limit min(1%, 0% + 0.5%)
    errors = analysis.gate("errors")
    assert errors.verdict is Verdict.PASS
    assert errors.figures["candidate_rate"] == pytest.approx(1 / 400)
    assert errors.figures["candidate_rate_lower_bound"] == pytest.approx(wilson_low(1, 400))
    assert errors.figures["max_rate"] == pytest.approx(0.005)
    assert analysis.decision is RolloutDecision.ADVANCE


def test_errors_above_the_limit_by_chance_alone_do_not_abort():
    """3/400 = 0.75% is over the 0.5% limit, but its lower bound (0.26%) is not."""
    errors = judge(candidate_errors=3).gate("errors")
    assert errors.figures["candidate_rate"] > errors.figures["max_rate"]
    assert errors.figures["candidate_rate_lower_bound"] == pytest.approx(wilson_low(3, 400))
    assert errors.figures["candidate_rate_lower_bound"] < 0.005
    assert errors.verdict is Verdict.PASS


def test_errors_abort_a_candidate_failing_five_percent():
    analysis = judge(candidate_errors=20, stable_errors=4)  # 5% vs 0.2%
    errors = analysis.gate("errors")
    assert errors.verdict is Verdict.FAIL
    assert errors.figures["candidate_rate_lower_bound"] == pytest.approx(wilson_low(20, 400))
    assert errors.figures["max_rate"] == pytest.approx(0.002 + 0.005)
    assert analysis.decision is RolloutDecision.ABORT
    assert analysis.reasons == (
        "errors: candidate 5xx 20/400 = 5.00% (lower bound 3.49%) vs stable 0.20%: bound > 0.70%",
    )


def test_the_error_limit_is_the_slo_when_stable_fails_more():
    errors = judge(stable_errors=60).gate("errors")  # stable 3%: the SLO's 1% binds
    assert errors.figures["max_rate"] == pytest.approx(0.01)


# latency


def test_latency_passes_a_candidate_as_fast_as_stable():
    latency = judge().gate("latency")
    n, k = 400, int(stats.binom.ppf(0.05, 400, 0.99))
    assert latency.verdict is Verdict.PASS
    assert latency.figures["order_statistic"] == k == 392
    # the k-th smallest is a 95% lower bound of the p99: P(Binomial(n, 0.99) >= k) >= 0.95
    assert stats.binom.sf(k - 1, n, 0.99) >= 0.95 > stats.binom.sf(k, n, 0.99)
    assert latency.figures["candidate_p99_lower_bound_ms"] == np.sort(fast(400, 1))[k - 1]
    assert latency.figures["stable_p99_ms"] == pytest.approx(np.percentile(fast(2_000), 99))
    stable_p99 = latency.figures["stable_p99_ms"]
    assert latency.figures["max_p99_ms"] == pytest.approx(max(stable_p99 * 1.5, stable_p99 + 10))


def test_a_few_slow_requests_are_no_proof_of_a_slow_p99():
    """6 of 400 at 500 ms: the p99 (interpolated) is slow, its lower bound (392nd) is not."""
    latency = np.concatenate([fast(394, 1), np.full(6, 500.0)])
    gate = judge(candidate_latency=latency).gate("latency")
    assert gate.figures["candidate_p99_ms"] > gate.figures["max_p99_ms"]
    assert gate.figures["candidate_p99_lower_bound_ms"] < 6.0
    assert gate.verdict is Verdict.PASS


def test_latency_holds_while_too_few_slow_candidate_requests_came():
    analysis = judge(candidate_latency=fast(150, 1) * 4)
    assert analysis.decision is RolloutDecision.HOLD
    assert analysis.gate("latency").verdict is Verdict.NOT_JUDGED


def test_latency_aborts_a_candidate_four_times_slower():
    analysis = judge(candidate_latency=fast(400, 1) * 4)  # ~20 ms against a 16 ms limit
    gate = analysis.gate("latency")
    assert gate.verdict is Verdict.FAIL
    assert gate.figures["candidate_p99_lower_bound_ms"] == np.sort(fast(400, 1) * 4)[391]
    assert analysis.decision is RolloutDecision.ABORT
    assert analysis.reasons[0].startswith("latency: candidate p99 ")


# divergence


def stable_and_shadow(shift: float = 0.0, flip_every: int = 0, n: int = 400):
    """Stable rows and the shadow's rows of the same ids, in another order."""
    probability = scores(n, 5)
    ids = [f"r{i}-0" for i in range(n)]
    shadow = probability + shift
    if flip_every:
        shadow = np.where(np.arange(n) % flip_every == 0, 1 - np.round(probability), shadow)
    stable = prediction_rows("2", STABLE, probability, ids=ids)
    candidate = prediction_rows("3", SHADOW, np.clip(shadow, 0, 1), ids=ids)
    return stable, candidate.iloc[::-1]


def test_shadow_rows_are_paired_on_request_id():
    stable, shadow = stable_and_shadow()
    analysis = judge(SHADOW, candidate_rows=shadow, stable_rows=stable)
    gate = analysis.gate("divergence")
    assert gate.verdict is Verdict.PASS
    assert gate.figures["candidate_rows"] == gate.figures["stable_rows"] == 400
    assert gate.figures["difference"] == 0.0  # same rows, same scores, whatever their order
    assert gate.figures["decision_difference"] == 0.0
    assert gate.method.startswith("paired on request_id")
    assert analysis.decision is RolloutDecision.ADVANCE


def test_shadow_divergence_aborts_a_candidate_deciding_a_fifth_of_rows_otherwise():
    stable, shadow = stable_and_shadow(flip_every=5)
    analysis = judge(SHADOW, candidate_rows=shadow, stable_rows=stable)
    gate = analysis.gate("divergence")
    assert gate.verdict is Verdict.FAIL
    assert gate.figures["decision_difference"] == pytest.approx(80 / 400)
    assert gate.figures["decision_difference_lower_bound"] == pytest.approx(wilson_low(80, 400))
    assert analysis.decision is RolloutDecision.ABORT


def test_shadow_divergence_aborts_probabilities_moved_by_a_tenth():
    stable, shadow = stable_and_shadow(shift=0.1)
    gate = judge(SHADOW, candidate_rows=shadow, stable_rows=stable).gate("divergence")
    assert gate.verdict is Verdict.FAIL
    assert gate.figures["difference"] == pytest.approx(0.1, abs=0.005)  # a few clipped at 1


def test_shadow_divergence_holds_without_pairs_until_enough_requests():
    stable, shadow = stable_and_shadow(shift=0.3, n=150)
    analysis = judge(SHADOW, candidate_latency=fast(150), candidate_rows=shadow, stable_rows=stable)
    assert analysis.decision is RolloutDecision.HOLD
    assert analysis.gate("divergence").verdict is Verdict.NOT_JUDGED


def test_canary_rows_are_compared_unpaired():
    gate = judge().gate("divergence")  # other rows from the same distribution
    assert gate.verdict is Verdict.PASS
    assert gate.figures["candidate_rows"] == 400 and gate.figures["stable_rows"] == 2_000
    ours, theirs = scores(400, 3), scores(2_000, 2)
    assert gate.figures["difference"] == pytest.approx(abs(ours.mean() - theirs.mean()))
    assert gate.figures["difference_lower_bound"] == 0.0  # no difference shown
    assert gate.method.startswith("unpaired")


def test_canary_divergence_aborts_a_candidate_flagging_far_more_transactions():
    candidate = prediction_rows("3", CANARY, np.where(np.arange(400) % 4 == 0, 0.9, 0.05))
    gate = judge(candidate_rows=candidate).gate("divergence")
    stable_rate = float((scores(2_000, 2) >= 0.5).mean())
    assert gate.verdict is Verdict.FAIL
    assert gate.figures["decision_difference"] == pytest.approx(0.25 - stable_rate)
    assert gate.figures["decision_difference_lower_bound"] > 0.05


# quality


def labelled(probability: np.ndarray, labels: np.ndarray, variant: str, version: str):
    return prediction_rows(version, variant, probability, labels=labels)


def informative(n: int, seed: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels (20% positive) and probabilities that separate them less as `noise` grows."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.2).astype(float)
    logits = 2.5 * (labels - 0.2) / max(noise, 1e-9) + rng.normal(0, 1, n) - 2
    return 1 / (1 + np.exp(-logits)), labels


def test_quality_is_not_judged_below_min_labels_and_does_not_hold():
    p, y = informative(199, 7, 1.0)
    candidate = pd.concat(
        [labelled(p, y, CANARY, "3"), prediction_rows("3", CANARY, scores(201, 3))]
    )
    analysis = judge(candidate_rows=candidate)
    gate = analysis.gate("quality")
    assert gate.verdict is Verdict.NOT_JUDGED
    assert gate.figures["candidate_labels"] == 199
    assert gate.text == "199 candidate and 0 stable labels: fewer than 200 each"
    assert analysis.decision is RolloutDecision.ADVANCE


def test_quality_passes_a_candidate_as_good_as_stable():
    p, y = informative(400, 7, 1.0)
    q, z = informative(600, 8, 1.0)
    stable = labelled(q, z, STABLE, "2")
    gate = judge(candidate_rows=labelled(p, y, CANARY, "3"), stable_rows=stable).gate("quality")
    assert gate.verdict is Verdict.PASS
    assert gate.figures["change_upper_bound"] > -0.02


def test_quality_aborts_a_clearly_worse_canary():
    p, y = informative(400, 7, 4.0)  # barely better than chance
    q, z = informative(600, 8, 1.0)
    stable = labelled(q, z, STABLE, "2")
    analysis = judge(candidate_rows=labelled(p, y, CANARY, "3"), stable_rows=stable)
    gate = analysis.gate("quality")
    auc = stats.mannwhitneyu(p[y == 1], p[y == 0]).statistic / ((y == 1).sum() * (y == 0).sum())
    assert gate.figures["candidate_metric"] == pytest.approx(auc)
    assert gate.figures["change"] == pytest.approx(auc - gate.figures["stable_metric"])
    assert gate.figures["change"] < gate.figures["change_upper_bound"] < -0.02
    assert gate.verdict is Verdict.FAIL
    assert "unpaired percentile bootstrap (1000 resamples" in gate.method
    assert analysis.decision is RolloutDecision.ABORT


def test_quality_in_shadow_is_paired_on_the_shared_labels():
    p, y = informative(400, 7, 1.0)
    ids = [f"r{i}-0" for i in range(400)]
    stable = prediction_rows("2", STABLE, p, labels=y, ids=ids)
    worse = prediction_rows("3", SHADOW, np.random.default_rng(9).random(400), labels=y, ids=ids)
    gate = judge(SHADOW, candidate_rows=worse, stable_rows=stable).gate("quality")
    assert gate.figures["candidate_labels"] == gate.figures["stable_labels"] == 400
    assert gate.verdict is Verdict.FAIL
    assert gate.method.startswith("paired percentile bootstrap")


# regression: demand-forecast


FORECAST = with_rollout("demand-forecast")


def test_a_forecast_canary_advances_and_a_biased_one_aborts():
    rng = np.random.default_rng(11)
    truth = rng.gamma(4, 10, 2_000)
    stable = prediction_rows("2", STABLE, truth + rng.normal(0, 3, 2_000), truth, binary=False)
    good_truth = rng.gamma(4, 10, 400)
    good = good_truth + rng.normal(0, 3, 400)
    ok = judge(
        candidate_rows=prediction_rows("3", CANARY, good, good_truth, binary=False),
        stable_rows=stable,
        spec=FORECAST,
    )
    assert ok.decision is RolloutDecision.ADVANCE
    assert ok.gate("quality").verdict is Verdict.PASS  # rmse, lower is better
    biased = prediction_rows("3", CANARY, good * 1.3, good_truth, binary=False)
    bad = judge(candidate_rows=biased, stable_rows=stable, spec=FORECAST)
    divergence, quality = bad.gate("divergence"), bad.gate("quality")
    relative = abs(good.mean() * 1.3 - stable[PREDICTION].mean()) / stable[PREDICTION].abs().mean()
    assert divergence.figures["difference"] == pytest.approx(relative)
    assert divergence.verdict is Verdict.FAIL
    assert quality.figures["candidate_metric"] > quality.figures["stable_metric"]  # rmse
    assert quality.figures["change"] < 0 and quality.verdict is Verdict.FAIL
    assert bad.decision is RolloutDecision.ABORT


def test_a_spec_without_a_rollout_policy_is_refused():
    with pytest.raises(ValueError, match="no rollout policy"):
        judge(spec=load_spec("demand-forecast"))


def test_a_few_milliseconds_over_a_fast_stable_are_no_regression():
    """8 ms against a 3 ms stable is past 1.5x, within the 10 ms allowance."""
    analysis = judge(candidate_latency=fast(400, 1) + 3, stable_latency=fast(2_000) - 2.5)
    latency = analysis.gate("latency")
    assert latency.verdict is Verdict.PASS, latency.text
    assert latency.figures["candidate_p99_lower_bound_ms"] > 1.5 * latency.figures["stable_p99_ms"]
