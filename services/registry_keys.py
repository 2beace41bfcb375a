"""The names every registered model version carries: its tags and its artifacts.

Training writes them (training/register.py); promotion, serving, monitoring and the CLI read
them. No MLflow import here, so quick commands can use the names without loading MLflow.
"""

from __future__ import annotations

#: Prefix of the model-version tags holding test metrics: `metric.<name>` = value.
METRIC_TAG_PREFIX = "metric."
#: Model-version tag: the git commit the version was trained from.
GIT_COMMIT_TAG = "git_commit"
#: Model-version tag: the md5 DVC recorded for the training snapshot ("untracked" without one).
DVC_DATA_MD5_TAG = "dvc_data_md5"
#: Model-version tag: the hash of the params that shaped the version (training.params).
PARAMS_HASH_TAG = "params_hash"
#: Model-version tag: the spec's evaluation metric, the one the gates compare.
EVALUATION_METRIC_TAG = "evaluation_metric"
#: Model-version tag: when the `production` alias was set on the version (ISO 8601, UTC).
PROMOTED_AT_TAG = "promoted_at"
#: Model-version tag: whether registration kept the booster's ONNX conversion, and why.
ONNX_CHECK_TAG = "onnx_check"
#: Model-version tag: why a rollout of the version was aborted (the analysis, or an operator).
ROLLOUT_ABORTED_TAG = "rollout_aborted"

#: Run tag of a rollout analysis (experiment `rollouts-<service>`): advance, hold or abort.
ROLLOUT_DECISION_TAG = "rollout.decision"
#: Run tag of a rollout analysis: the stable version the candidate was compared with.
ROLLOUT_STABLE_TAG = "rollout.stable_version"
#: Run tag of a rollout analysis: the candidate version on trial.
ROLLOUT_CANDIDATE_TAG = "rollout.candidate_version"
#: Run tag of a rollout analysis: the step's mode (shadow or canary).
ROLLOUT_MODE_TAG = "rollout.mode"
#: Prefix of a rollout analysis' run tags holding each gate's verdict: `rollout.verdict.<gate>`.
ROLLOUT_VERDICT_TAG_PREFIX = "rollout.verdict."
#: Run param of a rollout analysis: the candidate's share of requests (percent).
ROLLOUT_WEIGHT_PARAM = "rollout.weight"
#: Run param of a rollout analysis: the step's index in the policy (from 1).
ROLLOUT_STEP_PARAM = "rollout.step"
#: Run param of a rollout analysis: when the step began (ISO 8601, UTC).
ROLLOUT_SINCE_PARAM = "rollout.since"
#: Prefix of a rollout analysis' run params holding each gate's threshold.
ROLLOUT_THRESHOLD_PARAM_PREFIX = "rollout.threshold."

#: Artifact path of the pyfunc model in the run that registered the version.
MODEL_ARTIFACT = "model"
#: pyfunc artifact: the XGBoost booster file.
BOOSTER_ARTIFACT = "booster"
#: pyfunc artifact: the service.yaml the version was trained with (it travels with the model).
SPEC_ARTIFACT = "spec"
#: pyfunc artifact of a version whose ONNX conversion passed the check (not every version has
#: one): what replicas score small calls with (services/onnx_scoring.py).
ONNX_ARTIFACT = "onnx_model"
#: Run-relative path of the reference sample (training rows + predictions) monitoring reads.
REFERENCE_ARTIFACT = "reference/reference.parquet"


def metric_tag(metric: str) -> str:
    """The tag holding a version's value of `metric` (e.g. `metric.roc_auc`)."""
    return f"{METRIC_TAG_PREFIX}{metric}"
