"""Row validation (records and frames) and feature encoding shared by training and serving."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from services.datagen import generate
from services.encoding import FeatureEncoder
from services.schema import (
    Problem,
    frame_to_records,
    record_model,
    surely_valid,
    validate_features,
    validate_frame,
)
from services.spec import load_spec
from training.data import problem_report

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def fraud():
    return load_spec("fraud-detection")


@pytest.fixture(scope="module")
def demand():
    return load_spec("demand-forecast")


@pytest.fixture
def frame(fraud):
    return generate(fraud, 40, seed=5)


@pytest.fixture
def record(fraud, frame):
    return frame_to_records(fraud, frame[fraud.feature_names])[0]


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


# --- one record (the request body of serving) ------------------------------------------------


def test_valid_record_passes(fraud, record):
    validated = record_model(fraud).model_validate(record)
    assert validated.model_dump() == record


def test_valid_json_record_passes(fraud, record):
    record_model(fraud).model_validate_json(json.dumps(record))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hour", "3", "valid integer"),  # wrong type: no coercion from strings
        ("hour", 3.5, "valid integer"),
        ("is_foreign", "yes", "valid boolean"),
        ("is_foreign", 1, "valid boolean"),
        ("amount", "12.5", "valid number"),
        ("amount", -1.0, "greater than or equal to 0"),
        ("hour", 24, "less than or equal to 23"),
        ("merchant_category", "crypto_exchange", "Input should be"),
        ("channel", None, "Input should be"),  # not nullable
        ("amount", math.inf, "finite number"),
        ("amount", math.nan, "finite number"),
    ],
)
def test_invalid_value_in_a_record(fraud, record, field, value, message):
    with pytest.raises(ValidationError) as caught:
        record_model(fraud).model_validate(record | {field: value})
    errors = caught.value.errors()
    assert [e["loc"] for e in errors] == [(field,)]
    assert message in errors[0]["msg"]


def test_missing_and_unknown_fields(fraud, record):
    bad = {k: v for k, v in record.items() if k != "channel"} | {"colour": "red"}
    with pytest.raises(ValidationError) as caught:
        record_model(fraud).model_validate(bad)
    by_field = {e["loc"][0]: e["type"] for e in caught.value.errors()}
    assert by_field == {"channel": "missing", "colour": "extra_forbidden"}


def test_nullable_field_may_be_missing_or_null(fraud, record):
    model = record_model(fraud)
    without = {k: v for k, v in record.items() if k != "customer_age"}
    assert model.model_validate(without).customer_age is None
    assert model.model_validate(record | {"customer_age": None}).customer_age is None


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_json_are_refused(fraud, record, literal):
    body = json.dumps(record).replace(f'"amount": {record["amount"]}', f'"amount": {literal}')
    assert literal in body
    with pytest.raises(ValidationError) as caught:
        record_model(fraud).model_validate_json(body)
    assert caught.value.errors()[0]["loc"] == ("amount",)


def test_integer_is_accepted_for_a_numeric_feature(fraud, record):
    assert record_model(fraud).model_validate(record | {"amount": 12}).amount == 12


# --- frames (training snapshots) --------------------------------------------------------------


def test_generated_frame_is_valid(fraud, frame):
    assert validate_frame(fraud, frame) == []


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("hour", 30, "less than or equal to 23"),
        ("amount", -5.0, "greater than or equal to 0"),
        ("merchant_category", "crypto_exchange", "Input should be"),
        ("channel", None, "Input should be"),
        ("account_age_days", 1.5, "valid integer"),
        ("card_present", "yes", "valid boolean"),
        ("distance_from_home_km", np.inf, "finite number"),
    ],
)
def test_invalid_value_in_a_frame_names_row_and_column(fraud, frame, column, value, message):
    frame[column] = frame[column].astype(object)
    frame.loc[7, column] = value
    problem = only(validate_frame(fraud, frame))
    assert (problem.row, problem.column) == (7, column)
    assert message in problem.message
    assert str(problem).startswith(f"row 7, column '{column}'")


# Each case makes one column of a valid frame unusual; the vectorized check may send it to the
# per-row model (False) but must never accept what the model rejects.
UNUSUAL_COLUMNS = [
    ("hour", [30], False),
    ("hour", [1.0], True),  # whole floats in an integer column are integers
    ("hour", [1.5], False),
    ("hour", [2**60], False),
    ("amount", [np.inf], False),
    ("amount", [-0.01], False),
    ("amount", [True], False),
    ("amount", [7], True),  # an int is a valid float
    ("amount", ["7"], False),
    ("amount", [None], False),
    ("customer_age", [None], True),
    ("customer_age", [np.nan], True),
    ("merchant_category", ["crypto_exchange"], False),
    ("merchant_category", [1], False),
    ("card_present", [1], False),
    ("card_present", ["yes"], False),
    ("card_present", [None], False),
    ("distance_from_home_km", [None], True),
]


@pytest.mark.parametrize(("column", "values", "valid"), UNUSUAL_COLUMNS)
def test_vectorized_check_never_accepts_what_the_record_model_rejects(
    fraud, frame, column, values, valid
):
    features = frame[fraud.feature_names].head(len(values)).reset_index(drop=True)
    features[column] = pd.Series(values)
    model_accepts = validate_features(fraud, features) == []
    assert model_accepts == valid
    fast = surely_valid(fraud, features)
    assert not fast or model_accepts
    assert surely_valid(fraud, frame[fraud.feature_names])  # the common case stays fast


def test_vectorized_check_sends_unknown_or_missing_columns_to_the_model(fraud, frame):
    features = frame[fraud.feature_names]
    assert not surely_valid(fraud, features.assign(colour="red"))
    assert not surely_valid(fraud, features.drop(columns=["hour"]))
    assert surely_valid(fraud, features.drop(columns=["customer_age"]))  # nullable


def test_missing_value_in_a_non_nullable_column(fraud, frame):
    frame.loc[3, "amount"] = np.nan
    problem = only(validate_frame(fraud, frame))
    assert (problem.row, problem.column) == (3, "amount")


def test_missing_value_in_a_nullable_column_is_fine(fraud, frame):
    frame.loc[3, "distance_from_home_km"] = np.nan
    frame.loc[4, "customer_age"] = np.nan
    assert validate_frame(fraud, frame) == []


def test_unknown_and_missing_columns(fraud, frame):
    frame = frame.drop(columns=["hour"]).assign(colour="red")
    problems = validate_frame(fraud, frame)
    assert {p.column for p in problems} == {"hour", "colour"}
    assert {p.row for p in problems} == set(range(len(frame)))


@pytest.mark.parametrize(("value", "row"), [(2, 5), (0.5, 6), ("x", 7), (np.nan, 8)])
def test_bad_binary_target(fraud, frame, value, row):
    frame["is_fraud"] = frame["is_fraud"].astype(object)
    frame.loc[row, "is_fraud"] = value
    problem = only(validate_frame(fraud, frame))
    assert (problem.row, problem.column) == (row, "is_fraud")
    assert "{0, 1}" in problem.message


def test_regression_target_must_be_a_number(demand):
    frame = generate(demand, 20, seed=1)
    assert validate_frame(demand, frame) == []
    frame["units_sold"] = frame["units_sold"].astype(object)
    frame.loc[2, "units_sold"] = "many"
    frame.loc[3, "units_sold"] = None
    problems = validate_frame(demand, frame)
    assert [(p.row, p.column) for p in problems] == [(2, "units_sold"), (3, "units_sold")]


def test_missing_target_column(fraud, frame):
    problem = only(validate_frame(fraud, frame.drop(columns=["is_fraud"])))
    assert problem.column == "is_fraud"
    assert "missing" in problem.message


def test_rows_are_positions_whatever_the_index(fraud, frame):
    frame.index = range(100, 100 + len(frame))
    frame.loc[105, "hour"] = 99
    frame.loc[106, "is_fraud"] = 7
    problems = validate_frame(fraud, frame)
    assert sorted((p.row, p.column) for p in problems) == [(5, "hour"), (6, "is_fraud")]


def test_problem_report_names_rows_and_columns(fraud, frame):
    frame.loc[[2, 9], "hour"] = 42
    frame["channel"] = frame["channel"].astype(object)
    frame.loc[4, "channel"] = "telepathy"
    report = problem_report(validate_frame(fraud, frame), "data/x/snapshot.parquet")
    lines = report.splitlines()
    assert lines[0] == "data/x/snapshot.parquet: 3 invalid values"
    assert "  column 'hour': 2 rows" in lines
    assert "  column 'channel': 1 rows" in lines
    assert any(line.startswith("  row 2, column 'hour'") for line in lines)
    assert any(line.startswith("  row 9, column 'hour'") for line in lines)
    assert any(line.startswith("  row 4, column 'channel'") for line in lines)


def test_problem_report_is_bounded(fraud):
    frame = generate(fraud, 500, seed=2)
    frame["hour"] = 99
    report = problem_report(validate_frame(fraud, frame), "snap")
    assert report.startswith("snap: 500 invalid values")
    assert len(report.splitlines()) < 100


# --- records <-> frames and encoding ---------------------------------------------------------


@pytest.mark.parametrize("name", ["fraud-detection", "demand-forecast"])
def test_frame_to_records_round_trips(name):
    spec = load_spec(name)
    frame = generate(spec, 200, seed=4)[spec.feature_names]
    records = frame_to_records(spec, frame)
    assert len(records) == 200
    # plain JSON types, missing values as None, gapped integer columns back to ints
    text = json.dumps(records, allow_nan=False)
    back = pd.DataFrame(json.loads(text))
    assert list(back.columns) == spec.feature_names
    for f in spec.features:
        original, restored = frame[f.name], back[f.name]
        assert (original.isna() == restored.isna()).all(), f.name
        present = original.notna()
        if f.type in ("numeric", "integer"):
            np.testing.assert_allclose(
                original[present].astype(float), restored[present].astype(float)
            )
        else:
            assert original[present].tolist() == restored[present].tolist(), f.name
    ages = [r["customer_age"] for r in records] if name == "fraud-detection" else []
    assert all(a is None or type(a) is int for a in ages)
    assert None in ages or name != "fraud-detection"


@pytest.mark.parametrize("name", ["fraud-detection", "demand-forecast"])
def test_encode_records_equals_encode_frame(name):
    spec = load_spec(name)
    frame = generate(spec, 300, seed=6, drift="new-categories")[spec.feature_names]
    records = frame_to_records(spec, frame)
    encoder = FeatureEncoder(spec)
    from_records, from_frame = encoder.encode_records(records), encoder.encode_frame(frame)
    assert from_records.dtype == from_frame.dtype == np.float32
    assert from_records.shape == (300, len(spec.features))
    np.testing.assert_array_equal(from_records, from_frame)  # NaN == NaN here
    assert np.isnan(from_frame).any()


def test_encoding_of_missing_unknown_and_known_values(fraud, record):
    encoder = FeatureEncoder(fraud)
    merchant = fraud.feature_names.index("merchant_category")
    age = fraud.feature_names.index("customer_age")
    foreign = fraud.feature_names.index("is_foreign")
    rows = [
        record | {"merchant_category": "crypto_exchange", "customer_age": None},
        record | {"merchant_category": "gambling", "is_foreign": True},
        {k: v for k, v in record.items() if k != "customer_age"},  # absent = missing
    ]
    matrix = encoder.encode_records(rows)
    np.testing.assert_array_equal(matrix, encoder.encode_frame(pd.DataFrame(rows)))
    assert np.isnan(matrix[0, merchant]) and np.isnan(matrix[0, age])
    categories = fraud.features[merchant].categories or ()
    assert matrix[1, merchant] == categories.index("gambling")
    assert matrix[1, foreign] == 1.0
    assert np.isnan(matrix[2, age])
    assert encoder.feature_types[merchant] == "c" and encoder.feature_types[age] == "q"
