"""The service spec: one typed model of `services/<name>/service.yaml`.

Training, serving and monitoring all read a service through `load_spec`; nothing else
keeps a copy of a feature list, a threshold or an autoscaling setting.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.settings import repo_root

SPEC_FILE = "service.yaml"
SERVICE_NAME_PATTERN = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"

FeatureType = Literal["numeric", "integer", "categorical", "boolean"]
Task = Literal["binary", "regression"]
Metric = Literal["roc_auc", "pr_auc", "f1", "rmse", "mae", "r2"]
LOWER_IS_BETTER: frozenset[str] = frozenset({"rmse", "mae"})
TASK_METRICS: dict[str, frozenset[str]] = {
    "binary": frozenset({"roc_auc", "pr_auc", "f1"}),
    "regression": frozenset({"rmse", "mae", "r2"}),
}


class SpecError(ValueError):
    """A service spec that cannot be loaded; the message names the file and the field."""


class _FieldError(ValueError):
    """A cross-field check that failed; `loc` is the offending field, relative to the model."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Strict):
    """One model input: its type, allowed values and whether it may be missing."""

    name: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    type: FeatureType
    description: str = ""
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    nullable: bool = False

    @model_validator(mode="after")
    def _check_domain(self) -> Feature:
        if self.type == "categorical":
            if not self.categories:
                raise _FieldError(
                    ("categories",), "a categorical feature needs a non-empty 'categories' list"
                )
            if len(set(self.categories)) != len(self.categories):
                raise _FieldError(("categories",), "'categories' has duplicates")
        elif self.categories is not None:
            raise _FieldError(
                ("categories",),
                f"'categories' is only allowed on categorical features, not {self.type}",
            )
        if self.type in ("categorical", "boolean") and (
            self.min is not None or self.max is not None
        ):
            raise _FieldError(
                ("min" if self.min is not None else "max",),
                "'min'/'max' are only allowed on numeric and integer features",
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise _FieldError(("min",), f"'min' ({self.min}) is greater than 'max' ({self.max})")
        return self


class ModelSettings(_Strict):
    """XGBoost training settings: booster params and boosting rounds."""

    params: dict[str, Any] = Field(default_factory=dict)
    num_boost_round: int = Field(default=200, ge=1)
    early_stopping_rounds: int = Field(default=20, ge=1)


class Evaluation(_Strict):
    """The metric a model is judged by and the floor it must reach to be registered."""

    metric: Metric
    floor: float
    decision_threshold: float = Field(
        default=0.5, gt=0, lt=1, description="binary: class 1 at or above"
    )

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in LOWER_IS_BETTER

    def meets(self, value: float, bar: float) -> bool:
        """Whether `value` is at least as good as `bar` for this metric."""
        return value >= bar if self.higher_is_better else value <= bar


RolloutMode = Literal["shadow", "canary"]


def weight_problem(mode: RolloutMode, weight: float) -> str | None:
    """Why `weight` is refused for a step of `mode` (None: it is allowed); policies and the
    manifest's traffic apply the same rule."""
    if mode == "canary" and weight >= 100:
        return "a canary takes less than 100%: completion is the last step"
    return None


class RolloutStep(_Strict):
    """One traffic step: the candidate scores `weight`% of requests off the response path
    (shadow) or answers them (canary)."""

    mode: RolloutMode
    weight: float = Field(gt=0, le=100, description="percent of requests")

    @model_validator(mode="after")
    def _check_weight(self) -> RolloutStep:
        problem = weight_problem(self.mode, self.weight)
        if problem:
            raise _FieldError(("weight",), problem)
        return self


class RolloutGates(_Strict):
    """Thresholds the rollout analysis holds the candidate to, against the stable version.

    Every comparison is a one-sided test or bound at `confidence` (docs/ROLLOUTS.md); latency
    and errors are also held to the service's SLOs.
    """

    confidence: float = Field(default=0.95, ge=0.5, lt=1)
    max_latency_ratio: float = Field(default=1.5, ge=1, description="candidate p99 / stable p99")
    max_latency_increase_ms: float = Field(
        default=10.0,
        ge=0,
        description="p99 over stable's always allowed (a few ms at a ms scale is no regression)",
    )
    max_error_rate_increase: float = Field(
        default=0.005, ge=0, lt=1, description="5xx rate over stable's"
    )
    max_decision_flips: float = Field(
        default=0.05, ge=0, le=1, description="binary: share of decisions that differ"
    )
    max_prediction_difference: float = Field(
        default=0.05,
        ge=0,
        description="binary: mean |probability difference|; regression: mean |difference| "
        "relative to the mean |stable prediction|",
    )
    max_metric_loss: float = Field(
        default=0.02, ge=0, description="labelled metric: how much worse than stable"
    )
    min_labels: int = Field(default=200, ge=1, description="labels per variant to judge quality")


class Rollout(_Strict):
    """How a release reaches users: traffic steps, the evidence each needs, the gates."""

    steps: tuple[RolloutStep, ...] = Field(min_length=1)
    min_requests: int = Field(default=200, ge=1, description="candidate requests per step")
    min_minutes: float = Field(default=10.0, ge=0, description="minutes per step")
    auto_advance: bool = Field(
        default=True, description="analysis commits steps; false: a pull request per step"
    )
    gates: RolloutGates = RolloutGates()


class Promotion(_Strict):
    """Gates `mlops promote` checks before a version goes to production, and the rollout that
    takes it there (none: a release serves all traffic at once)."""

    tolerance: float = Field(default=0.01, ge=0, description="allowed loss vs production")
    require_signature: bool = True
    rollout: Rollout | None = None


class Autoscaling(_Strict):
    """Ray Serve autoscaling_config fields for one deployment."""

    min_replicas: int = Field(default=1, ge=0)
    initial_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int = Field(default=2, ge=1)
    target_ongoing_requests: float = Field(default=2.0, gt=0)
    upscale_delay_s: float = Field(default=10.0, ge=0)
    downscale_delay_s: float = Field(default=300.0, ge=0)

    @model_validator(mode="after")
    def _check_bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise _FieldError(("min_replicas",), "'min_replicas' is greater than 'max_replicas'")
        return self


class RequestMerging(_Strict):
    """Concurrent real-time calls a replica scores in one model call (serving/merging.py):
    up to `max_requests` of those queued, after waiting `wait_ms` for company
    (0: only requests already queued are merged, none waits)."""

    max_requests: int = Field(default=64, ge=1, le=1_024)
    wait_ms: float = Field(default=0.0, ge=0, le=1_000)


class Serving(_Strict):
    """Real-time and batch deployment settings."""

    realtime: Autoscaling = Autoscaling()
    batch: Autoscaling = Autoscaling(min_replicas=0, max_replicas=1)
    max_request_rows: int = Field(default=1_000, ge=1)
    max_batch_rows: int = Field(default=100_000, ge=1)
    max_ongoing_requests: int = Field(default=32, ge=1)
    request_merging: RequestMerging = RequestMerging()


class Monitoring(_Strict):
    """Thresholds the scheduled monitor turns into retrain / revert decisions."""

    feature_drift_share: float = Field(default=0.3, gt=0, le=1)
    prediction_drift_threshold: float = Field(default=0.1, gt=0, le=1)
    column_drift_threshold: float = Field(default=0.1, gt=0, le=1)
    min_rows: int = Field(default=500, ge=1)
    revert_window_hours: float = Field(default=72.0, ge=0)
    performance_margin: float = Field(default=0.05, ge=0)


class Slo(_Strict):
    """Service-level objectives of every version, judged by the monitor on its request records.

    Latency is of answered real-time requests (/predict, /invocations), measured in the replica;
    the error rate counts 5xx (and failed) responses of every request, /batch included.
    """

    p99_latency_ms: float = Field(default=100.0, gt=0, le=60_000)
    error_rate: float = Field(default=0.01, ge=0, lt=1, description="share of 5xx responses")
    min_requests: int = Field(default=200, ge=1, description="requests before a version is judged")


class ServiceSpec(_Strict):
    """Everything the platform knows about one ML service."""

    name: str = Field(pattern=SERVICE_NAME_PATTERN, max_length=48)
    description: str = ""
    task: Task
    target: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    features: tuple[Feature, ...] = Field(min_length=1)
    model: ModelSettings = ModelSettings()
    evaluation: Evaluation
    promotion: Promotion = Promotion()
    serving: Serving = Serving()
    monitoring: Monitoring = Monitoring()
    slo: Slo = Slo()

    @model_validator(mode="after")
    def _check_consistency(self) -> ServiceSpec:
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise _FieldError(("features",), f"duplicate feature names: {', '.join(duplicates)}")
        from services.inference_log import LOG_COLUMNS  # pandas and pyarrow: only when needed

        clashes = sorted(LOG_COLUMNS.intersection(names))
        if clashes:
            raise _FieldError(
                ("features",),
                f"feature names taken by inference-log columns: {', '.join(clashes)}",
            )
        if self.target in names:
            raise _FieldError(("target",), f"'{self.target}' is also listed as a feature")
        if self.evaluation.metric not in TASK_METRICS[self.task]:
            allowed = ", ".join(sorted(TASK_METRICS[self.task]))
            raise _FieldError(
                ("evaluation", "metric"),
                f"'{self.evaluation.metric}' does not fit task '{self.task}' (allowed: {allowed})",
            )
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def folder(self) -> Path:
        return catalogue_dir() / self.name


def parse_spec(raw: Any, source: str) -> ServiceSpec:
    """Validate a parsed YAML document; errors name `source` and each bad field."""
    try:
        return ServiceSpec.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {_describe(err, raw)}" for err in exc.errors(include_url=False)]
        raise SpecError("invalid service spec\n  " + "\n  ".join(lines)) from None


def _describe(err: Any, raw: Any) -> str:
    """`field.path: message` of one error; cross-field checks name their field, features
    their name."""
    loc = list(err["loc"])
    message = err["msg"]
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, _FieldError):
        loc += cause.loc
        message = str(cause)
    if len(loc) > 1 and loc[0] == "features" and isinstance(loc[1], int):
        with contextlib.suppress(AttributeError, IndexError, KeyError, TypeError):
            message = f"feature '{raw['features'][loc[1]]['name']}': {message}"
    return f"{'.'.join(str(p) for p in loc) or '<root>'}: {message}"


def load_spec_file(path: Path) -> ServiceSpec:
    """Load and validate one service.yaml; the folder name must equal the spec's name."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    return _parse_text(path, text)


def _parse_text(path: Path, text: str) -> ServiceSpec:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    spec = parse_spec(raw, str(path))
    if spec.name != path.parent.name:
        raise SpecError(f"{path}: name: '{spec.name}' differs from its folder '{path.parent.name}'")
    return spec


def catalogue_dir() -> Path:
    """The folder holding one sub-folder per service (`services/` of the working tree)."""
    return repo_root() / "services"


def service_names() -> list[str]:
    """Names of the services in the catalogue, sorted."""
    return sorted(p.parent.name for p in catalogue_dir().glob(f"*/{SPEC_FILE}"))


def check_service(name: str) -> None:
    """Refuse a name that is not a service of the catalogue (path-like names included)."""
    known = service_names()
    if name not in known:
        raise SpecError(f"unknown service '{name}' (known: {', '.join(known) or 'none'})")


def load_spec(name: str) -> ServiceSpec:
    """The spec of service `name` from the catalogue; unknown or path-like names are refused."""
    check_service(name)
    path = catalogue_dir() / name / SPEC_FILE
    return _load_cached(path, path.read_text())


@functools.lru_cache(maxsize=64)
def _load_cached(path: Path, text: str) -> ServiceSpec:
    """Parsed once per content: an edit is seen even within the file system's mtime tick."""
    return _parse_text(path, text)


def load_catalogue() -> dict[str, ServiceSpec]:
    """Every service spec in the catalogue, by name."""
    return {name: load_spec(name) for name in service_names()}
