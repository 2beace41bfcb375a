"""Service specs: every shipped spec loads; every invalid field is named with its file."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from services.settings import PACKAGE_REPO
from services.spec import (
    SPEC_FILE,
    ServiceSpec,
    SpecError,
    load_catalogue,
    load_spec,
    load_spec_file,
    parse_spec,
    service_names,
)

pytestmark = pytest.mark.unit

SHIPPED = PACKAGE_REPO / "services"


def shipped_raw(name: str = "fraud-detection") -> dict:
    return yaml.safe_load((SHIPPED / name / SPEC_FILE).read_text())


def write_spec(root: Path, raw: object, folder: str | None = None) -> Path:
    name = folder or (raw.get("name") if isinstance(raw, dict) else None) or "broken"
    path = root / str(name) / SPEC_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def spec_error(raw: dict, tmp_path: Path) -> str:
    """The SpecError message of `raw` loaded from a file (folder = the name, when valid)."""
    folder = raw["name"] if isinstance(raw.get("name"), str) else "broken"
    path = write_spec(tmp_path, raw, folder="broken" if "/" in folder else folder)
    with pytest.raises(SpecError) as caught:
        load_spec_file(path)
    message = str(caught.value)
    assert str(path) in message, message
    return message


def feature(raw: dict, name: str) -> dict:
    return next(f for f in raw["features"] if f["name"] == name)


def test_both_services_are_shipped():
    assert {"fraud-detection", "demand-forecast"} <= set(service_names())


@pytest.mark.parametrize("name", service_names())
def test_shipped_spec_loads(name):
    spec = load_spec(name)
    assert isinstance(spec, ServiceSpec)
    assert spec.name == name
    assert spec.folder == SHIPPED / name
    assert spec.target not in spec.feature_names
    assert spec.evaluation.metric


def test_shipped_tasks_and_metrics():
    catalogue = load_catalogue()
    fraud, demand = catalogue["fraud-detection"], catalogue["demand-forecast"]
    assert (fraud.task, fraud.evaluation.higher_is_better) == ("binary", True)
    assert (demand.task, demand.evaluation.higher_is_better) == ("regression", False)
    types = {f.type for s in catalogue.values() for f in s.features}
    assert types == {"numeric", "integer", "categorical", "boolean"}
    assert any(f.nullable for f in fraud.features)
    assert any(f.nullable for f in demand.features)


def test_load_spec_is_cached_until_the_file_changes():
    assert load_spec("fraud-detection") is load_spec("fraud-detection")


INVALID = {
    "uppercase name": (lambda r: r.update(name="Fraud_Detection"), ["name", "pattern"]),
    "path-like name": (lambda r: r.update(name="../x"), ["name", "pattern"]),
    "unknown task": (lambda r: r.update(task="multiclass"), ["task", "binary", "regression"]),
    "metric not fitting the task": (
        lambda r: r["evaluation"].update(metric="rmse"),
        ["evaluation.metric", "rmse", "binary"],
    ),
    "categorical without categories": (
        lambda r: feature(r, "channel").pop("categories"),
        ["features.4.categories", "channel", "categories"],
    ),
    "categories on a numeric feature": (
        lambda r: feature(r, "amount").update(categories=["a", "b"]),
        ["features.0.categories", "amount", "categorical"],
    ),
    "min greater than max": (
        lambda r: feature(r, "hour").update(min=23, max=0),
        ["features.1.min", "hour", "greater than 'max'"],
    ),
    "duplicate feature names": (
        lambda r: r["features"].append({"name": "amount", "type": "numeric"}),
        ["features", "duplicate feature names: amount"],
    ),
    "target listed as a feature": (
        lambda r: r["features"].append({"name": "is_fraud", "type": "boolean"}),
        ["target", "'is_fraud' is also listed as a feature"],
    ),
    "unknown top-level key": (lambda r: r.update(owner="team"), ["owner", "Extra inputs"]),
    "request merging of no request": (
        lambda r: r["serving"]["request_merging"].update(max_requests=0),
        ["serving.request_merging.max_requests", "greater than or equal to 1"],
    ),
    "negative merging wait": (
        lambda r: r["serving"]["request_merging"].update(wait_ms=-1),
        ["serving.request_merging.wait_ms", "greater than or equal to 0"],
    ),
    "unknown nested key": (
        lambda r: r["serving"]["realtime"].update(replicas=3),
        ["serving.realtime.replicas", "Extra inputs"],
    ),
    "unknown feature type": (
        lambda r: feature(r, "hour").update(type="date"),
        ["features.1.type", "hour"],
    ),
    "missing evaluation": (lambda r: r.pop("evaluation"), ["evaluation", "Field required"]),
    "autoscaling bounds": (
        lambda r: r["serving"]["realtime"].update(min_replicas=5, max_replicas=2),
        ["serving.realtime.min_replicas", "max_replicas"],
    ),
    "decision threshold out of (0, 1)": (
        lambda r: r["evaluation"].update(decision_threshold=1.5),
        ["evaluation.decision_threshold"],
    ),
    "p99 latency objective of zero": (
        lambda r: r["slo"].update(p99_latency_ms=0),
        ["slo.p99_latency_ms", "greater than 0"],
    ),
    "error-rate objective of 100%": (
        lambda r: r["slo"].update(error_rate=1.0),
        ["slo.error_rate", "less than 1"],
    ),
    "negative error-rate objective": (
        lambda r: r["slo"].update(error_rate=-0.1),
        ["slo.error_rate", "greater than or equal to 0"],
    ),
    "SLOs judged from no requests": (
        lambda r: r["slo"].update(min_requests=0),
        ["slo.min_requests", "greater than or equal to 1"],
    ),
    "unknown SLO": (
        lambda r: r["slo"].update(p95_latency_ms=50),
        ["slo.p95_latency_ms", "Extra inputs"],
    ),
    "a feature named like an inference-log column": (
        lambda r: r["features"].append({"name": "latency_ms", "type": "numeric"}),
        ["features", "taken by inference-log columns: latency_ms"],
    ),
}


@pytest.mark.parametrize("name", service_names())
def test_shipped_slos_leave_a_wide_margin_over_todays_serving(name):
    """p99 of a few ms and no 5xx on 2 cores (benchmarks/RESULTS.md): far inside both."""
    slo = load_spec(name).slo
    assert slo.p99_latency_ms >= 50 and 0 < slo.error_rate <= 0.05 and slo.min_requests >= 100
    assert shipped_raw(name)["slo"] == slo.model_dump()  # written out, not left to defaults


def test_slo_defaults_apply_when_the_section_is_absent(tmp_path):
    raw = shipped_raw()
    raw.pop("slo")
    spec = load_spec_file(write_spec(tmp_path, raw))
    assert spec.slo.model_dump() == {
        "p99_latency_ms": 100.0,
        "error_rate": 0.01,
        "min_requests": 200,
    }


@pytest.mark.parametrize("case", INVALID)
def test_invalid_field_names_file_and_field(case, tmp_path):
    mutate, expected = INVALID[case]
    raw = shipped_raw()
    mutate(raw)
    message = spec_error(raw, tmp_path)
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"


def test_parse_spec_names_the_source():
    raw = shipped_raw()
    raw["task"] = "clustering"
    with pytest.raises(SpecError, match=r"somewhere/service\.yaml: task: "):
        parse_spec(raw, "somewhere/service.yaml")


def test_every_problem_is_reported_not_only_the_first(tmp_path):
    raw = shipped_raw()
    raw["task"] = "multiclass"
    raw["owner"] = "team"
    feature(raw, "hour")["min"] = 99
    message = spec_error(raw, tmp_path)
    assert "task:" in message
    assert "owner:" in message
    assert "features.1.min:" in message


def test_folder_must_match_the_name(tmp_path):
    path = write_spec(tmp_path, shipped_raw(), folder="fraud-detector")
    with pytest.raises(SpecError) as caught:
        load_spec_file(path)
    message = str(caught.value)
    assert str(path) in message
    assert "name" in message
    assert "fraud-detection" in message and "fraud-detector" in message


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "fraud-detection" / SPEC_FILE
    path.parent.mkdir()
    path.write_text("name: fraud-detection\nfeatures: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML") as caught:
        load_spec_file(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("document", ["", "- a list\n- not a mapping\n"])
def test_empty_or_non_mapping_document(document, tmp_path):
    path = tmp_path / "fraud-detection" / SPEC_FILE
    path.parent.mkdir()
    path.write_text(document)
    with pytest.raises(SpecError) as caught:
        load_spec_file(path)
    assert str(path) in str(caught.value)


def test_missing_file(tmp_path):
    path = tmp_path / "ghost" / SPEC_FILE
    with pytest.raises(SpecError, match="file not found") as caught:
        load_spec_file(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("name", ["no-such-service", "../services", "fraud-detection/", ""])
def test_unknown_service_name(name):
    with pytest.raises(SpecError, match="unknown service") as caught:
        load_spec(name)
    assert "fraud-detection" in str(caught.value)  # lists the known services


def test_catalogue_follows_the_repo_root(tmp_path, monkeypatch):
    raw = copy.deepcopy(shipped_raw())
    raw["name"] = "churn"
    write_spec(tmp_path / "services", raw)
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(tmp_path))
    assert service_names() == ["churn"]
    assert load_spec("churn").name == "churn"
    with pytest.raises(SpecError, match="unknown service"):
        load_spec("fraud-detection")


def test_spec_is_immutable():
    spec = load_spec("fraud-detection")
    with pytest.raises(ValueError):
        spec.task = "regression"  # type: ignore[misc]


def test_an_edited_spec_is_reloaded_even_within_one_mtime_tick(tmp_path, monkeypatch):
    raw = shipped_raw()
    path = write_spec(tmp_path / "services", raw)
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(tmp_path))
    assert load_spec("fraud-detection").evaluation.floor == raw["evaluation"]["floor"]
    for floor in (0.91, 0.92, 0.93):  # same length, same (pinned) mtime: only content differs
        raw["evaluation"]["floor"] = floor
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
        assert load_spec("fraud-detection").evaluation.floor == floor
