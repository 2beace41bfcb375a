"""Decision rules on constructed measurements (no Evidently, no MLflow)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from monitoring.decision import Action, Performance, Thresholds, decide
from monitoring.slo import SloTargets
from services.spec import Monitoring, Slo, load_spec
from tests.constructed import HEALTHY
from tests.constructed import THRESHOLDS as T

pytestmark = pytest.mark.unit


def test_thresholds_come_from_the_spec():
    spec = load_spec("fraud-detection")
    thresholds = Thresholds.from_spec(spec.monitoring, spec.slo)
    assert thresholds == Thresholds(
        **spec.monitoring.model_dump(), slo=SloTargets(**spec.slo.model_dump())
    )
    assert thresholds.slo == SloTargets(p99_latency_ms=100, error_rate=0.01, min_requests=200)
    assert Thresholds.from_spec(Monitoring(), Slo()).min_rows == 500


def test_healthy_traffic_needs_nothing():
    decision = decide(HEALTHY, T)
    assert decision.action is Action.NONE
    assert any("feature drift share 0.00 < 0.30" in r for r in decision.reasons)


def test_feature_drift_with_enough_rows_retrains():
    m = replace(HEALTHY, feature_drift_share=0.46, drifted_columns=6)
    decision = decide(m, T)
    assert decision.action is Action.RETRAIN
    assert "6 of 13 features drifted" in decision.reasons[0]


def test_feature_drift_at_exactly_the_threshold_retrains():
    assert decide(replace(HEALTHY, feature_drift_share=0.3), T).action is Action.RETRAIN


def test_too_few_rows_is_insufficient_data_even_with_drift():
    m = replace(HEALTHY, rows=499, feature_drift_share=1.0, prediction_drift=0.9)
    decision = decide(m, T)
    assert decision.action is Action.INSUFFICIENT_DATA
    assert "499 rows" in decision.reasons[0]


def test_no_measurement_at_all_is_insufficient_data():
    m = replace(HEALTHY, rows=0, feature_drift_share=None, prediction_drift=None)
    assert decide(m, T).action is Action.INSUFFICIENT_DATA


def test_prediction_drift_after_recent_promotion_reverts():
    m = replace(HEALTHY, prediction_drift=0.4, feature_drift_share=0.08, drifted_columns=1)
    decision = decide(m, T)
    assert decision.action is Action.REVERT
    assert "prediction drift 0.400 >= 0.100" in decision.reasons[0]
    assert "previous version is v1" in decision.reasons[-1]


def test_performance_drop_after_recent_promotion_reverts():
    perf = Performance("roc_auc", True, live=0.70, registered=0.92, previous=0.90)
    decision = decide(replace(HEALTHY, performance=perf), T)
    assert decision.action is Action.REVERT
    assert "worse than previous v1's 0.9000" in decision.reasons[0]


def test_performance_drop_for_lower_is_better_metric_reverts():
    perf = Performance("rmse", False, live=14.0, registered=9.0, previous=9.5)
    margin = replace(T, performance_margin=2.0)
    assert decide(replace(HEALTHY, performance=perf), margin).action is Action.REVERT
    within = Performance("rmse", False, live=11.0, registered=9.0, previous=9.5)
    assert decide(replace(HEALTHY, performance=within), margin).action is Action.NONE


def test_small_performance_drop_within_margin_does_not_revert():
    perf = Performance("roc_auc", True, live=0.86, registered=0.91, previous=0.90)
    assert decide(replace(HEALTHY, performance=perf), T).action is Action.NONE


@pytest.mark.parametrize("hours", [72.5, 500.0, None])
def test_same_evidence_outside_the_window_does_not_revert(hours):
    perf = Performance("roc_auc", True, live=0.60, registered=0.92, previous=0.90)
    m = replace(HEALTHY, prediction_drift=0.5, performance=perf, hours_since_promotion=hours)
    decision = decide(m, T)
    assert decision.action is Action.NONE
    assert any("outside the 72 h revert window" in r for r in decision.reasons)


def test_no_previous_version_means_no_revert():
    perf = Performance("roc_auc", True, live=0.60, registered=0.92, previous=None)
    m = replace(HEALTHY, prediction_drift=0.5, performance=perf, previous_version=None)
    decision = decide(m, T)
    assert decision.action is Action.NONE
    assert "no previous version to revert to" in decision.reasons


def test_prediction_drift_with_feature_drift_is_a_retrain_not_a_revert():
    m = replace(HEALTHY, prediction_drift=0.5, feature_drift_share=0.5, drifted_columns=7)
    assert decide(m, T).action is Action.RETRAIN


def test_concept_drift_is_noted_but_triggers_nothing_without_previous():
    perf = Performance("roc_auc", True, live=0.55, registered=0.92, previous=None)
    m = replace(HEALTHY, performance=perf, previous_version=None, hours_since_promotion=400)
    decision = decide(m, T)
    assert decision.action is Action.NONE
    assert decision.notes and "concept drift" in decision.notes[0]
