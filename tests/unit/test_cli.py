"""The `mlops` command line: sample output and clean errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mlops.cli import app
from services.schema import record_model
from services.spec import load_spec

pytestmark = pytest.mark.unit

runner = CliRunner()


def sample(*args: str):
    return runner.invoke(app, ["sample", *args])


@pytest.mark.parametrize("service", ["fraud-detection", "demand-forecast"])
def test_sample_prints_valid_records(service):
    result = sample("--service", service, "--rows", "3")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert list(body) == ["records"]
    assert len(body["records"]) == 3
    model = record_model(load_spec(service))
    for record in body["records"]:
        model.model_validate_json(json.dumps(record))  # strict JSON validation, as serving


def test_sample_is_deterministic_and_seeded():
    first = sample("--service", "fraud-detection", "--rows", "5", "--seed", "3").stdout
    again = sample("--service", "fraud-detection", "--rows", "5", "--seed", "3").stdout
    other = sample("--service", "fraud-detection", "--rows", "5", "--seed", "4").stdout
    assert first == again
    assert first != other


def test_sample_with_new_categories_shows_them():
    result = sample("-s", "fraud-detection", "--rows", "200", "--drift", "new-categories")
    assert result.exit_code == 0, result.output
    merchants = {r["merchant_category"] for r in json.loads(result.stdout)["records"]}
    assert "crypto_exchange" in merchants


def test_unknown_service_is_a_clean_error():
    result = sample("--service", "no-such-service", "--rows", "3")
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "unknown service 'no-such-service'" in result.stderr
    assert "fraud-detection" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["--service", "fraud-detection", "--rows", "0"],
        ["--service", "fraud-detection", "--drift", "sideways"],
        ["--rows", "3"],
    ],
)
def test_bad_options_are_usage_errors(args):
    result = sample(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_unknown_service_in_a_stage_is_a_clean_error():
    result = runner.invoke(app, ["stage", "prepare", "no-such-service"])
    assert result.exit_code == 1
    assert "unknown service 'no-such-service'" in result.stderr
    assert "Traceback" not in result.output
