"""Hostile request bodies against a service's payload rules (serving/api.py), without Ray.

Every case must be refused with a RequestError carrying a 4xx status and a message that
names the problem: never another exception (which the route would turn into a 500).
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.datagen import generate
from services.inference_log import (
    LABEL,
    PREDICTIONS_KIND,
    REQUEST_ID,
    TIMESTAMP,
    read_log,
    write_part,
)
from services.schema import frame_to_records
from services.spec import load_spec
from serving.api import RequestError, ServiceApi
from serving.protocol import (
    DF_RECORDS,
    DF_SPLIT,
    INPUTS,
    INSTANCES,
    RECORDS,
    SPLIT_COLUMNS,
    SPLIT_DATA,
)

pytestmark = pytest.mark.unit

SPEC = load_spec("fraud-detection")
API = ServiceApi(SPEC, SPEC.serving.max_request_rows)
BATCH = ServiceApi(SPEC, SPEC.serving.max_batch_rows)
FEATURES = SPEC.feature_names
BASE = generate(SPEC, 3, seed=1)[FEATURES]
RECORD = frame_to_records(SPEC, BASE)[0]
NESTED = b"[" * 10_000 + b"]" * 10_000
PARQUET = "application/vnd.apache.parquet"


def refused(parse: Callable[[], Any]) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse()
    error = caught.value
    assert 400 <= error.status < 500, error.message
    assert error.body()["error"] == error.message and error.message
    json.dumps(error.body())  # the route serialises it
    return error


def records_body(**changes: Any) -> bytes:
    return json.dumps({RECORDS: [RECORD | changes]}).encode()


def raw_records_body(field: str, literal: str) -> bytes:
    """A body with a literal JSON token (NaN, 1e309, ...) as the value of `field`."""
    record = json.dumps({RECORDS: [RECORD | {field: "@@"}]})
    return record.replace('"@@"', literal).encode()


def parquet(column: str, values: pa.Array) -> bytes:
    table = pa.Table.from_pandas(BASE.drop(columns=[column]), preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table.append_column(column, values), buffer)
    return buffer.getvalue()


def csv_with(column: str, value: str) -> bytes:
    frame = BASE.astype(object)
    frame.loc[0, column] = value
    return frame.to_csv(index=False).encode()


# --- the valid baseline: these parse, so the refusals below are about the change ----------


def test_valid_bodies_parse():
    assert API.parse_records(records_body()) == [RECORD]
    for key in (INPUTS, INSTANCES):  # MLflow reads both alike (TF Serving's form)
        assert API.parse_invocations(json.dumps({key: [RECORD]}).encode()) == [RECORD]
    assert len(BATCH.parse_table(BASE.to_csv(index=False).encode(), "text/csv")) == 3
    assert len(BATCH.parse_table(parquet("amount", pa.array([1.0, 2.0, 3.0])), PARQUET)) == 3
    assert API.parse_feedback(b'{"request_id": "abc", "label": 1}')[LABEL] == 1.0


# --- malformed JSON -------------------------------------------------------------------------

MALFORMED = [b"", b"{", b'{"records": [', b"{'records': []}", b"\xff\xfe", b'{"records": "\xff"}']


@pytest.mark.parametrize("body", MALFORMED)
@pytest.mark.parametrize(
    "parse",
    [API.parse_records, API.parse_invocations, API.parse_feedback],
    ids=["predict", "invocations", "feedback"],
)
def test_malformed_json_is_400(parse, body):
    error = refused(lambda: parse(body))
    assert error.status == 400 and "not valid JSON" in error.message


def test_malformed_json_batch_is_400():
    error = refused(lambda: BATCH.parse_table(b'{"records": [', "application/json"))
    assert error.status == 400 and "not valid JSON" in error.message


# --- NaN, Infinity and numbers beyond float64 ---------------------------------------------

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309", str(10**400)]


@pytest.mark.parametrize("literal", NON_FINITE)
def test_non_finite_numbers_are_422_naming_the_field(literal):
    error = refused(lambda: API.parse_records(raw_records_body("amount", literal)))
    assert error.status == 422
    assert "records[0].amount" in error.message and "finite number" in error.message


@pytest.mark.parametrize("literal", NON_FINITE)
def test_non_finite_numbers_via_invocations_are_422(literal):
    body = raw_records_body("amount", literal).replace(b'"records"', b'"dataframe_records"')
    error = refused(lambda: API.parse_invocations(body))
    assert error.status == 422 and "amount" in error.message


@pytest.mark.parametrize("literal", [str(10**400), "1e309", str(2**63)])
def test_huge_integers_are_422(literal):
    for parse in (API.parse_records, API.parse_invocations):
        body = raw_records_body("hour", literal)
        if parse == API.parse_invocations:
            body = body.replace(b'"records"', b'"inputs"')
        error = refused(lambda parse=parse, body=body: parse(body))
        assert error.status == 422 and "hour" in error.message


def test_a_number_with_thousands_of_digits_is_refused():
    body = raw_records_body("hour", "9" * 5_000)
    assert refused(lambda: API.parse_records(body)).status in (400, 422)
    inputs = body.replace(b'"records"', b'"inputs"')
    assert refused(lambda: API.parse_invocations(inputs)).status in (400, 422)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e309", str(10**400), "-" + str(10**400)])
def test_feedback_labels_beyond_float_are_422(literal):
    body = f'{{"request_id": "abc", "label": {literal}}}'.encode()
    error = refused(lambda: API.parse_feedback(body))
    assert error.status == 422 and "label" in error.message


# --- deep nesting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parse", "body"),
    [
        (API.parse_records, NESTED),
        (API.parse_records, b'{"records": ' + NESTED + b"}"),
        (API.parse_invocations, NESTED),
        (API.parse_invocations, b'{"inputs": ' + NESTED + b"}"),
        (API.parse_invocations, b'{"dataframe_records": ' + NESTED + b"}"),
        (API.parse_feedback, b'{"label": ' + b"[" * 1_000 + b"]" * 1_000 + b"}"),
        (lambda body: BATCH.parse_table(body, "application/json"), b'{"records": ' + NESTED + b"}"),
    ],
    ids=[
        "predict",
        "predict-records",
        "invocations",
        "inputs",
        "dataframe-records",
        "feedback",
        "batch",
    ],
)
def test_ten_thousand_levels_of_nesting_are_400_not_recursion_error(parse, body):
    error = refused(lambda: parse(body))
    assert error.status in (400, 413) and ("recursion" in error.message or "bytes" in error.message)


def test_nested_objects_inside_a_record_are_422():
    nested: Any = 1
    for _ in range(50):
        nested = {"a": nested}
    error = refused(lambda: API.parse_records(records_body(amount=nested)))
    assert error.status == 422 and "amount" in error.message


# --- long strings ---------------------------------------------------------------------------


def test_a_one_megabyte_category_is_422_without_echoing_it():
    long_value = "x" * 1_000_000
    for api in (API, BATCH):
        error = refused(lambda api=api: api.parse_records(records_body(channel=long_value)))
        assert error.status == 422 and "records[0].channel" in error.message
        assert len(json.dumps(error.body())) < 10_000  # the value is not sent back


def test_a_one_megabyte_column_name_is_422_and_truncated():
    error = refused(lambda: BATCH.parse_table(b"x" * 1_000_000 + b"\n1\n", "text/csv"))
    assert error.status == 422 and error.message.startswith("unknown columns: xxx")
    assert len(error.message) < 200


def test_a_hundred_thousand_unknown_columns_are_listed_briefly():
    header = b",".join(b"c%d" % i for i in range(100_000))
    error = refused(lambda: BATCH.parse_table(header + b"\n" + b"1," * 99_999 + b"1\n", "text/csv"))
    assert error.status == 422 and "(and 99990 more)" in error.message


def test_a_long_request_id_is_422():
    body = json.dumps({REQUEST_ID: "a" * 3_000, LABEL: 1}).encode()
    error = refused(lambda: API.parse_feedback(body))
    assert error.status == 422 and "request_id" in error.message


# --- wrong types ------------------------------------------------------------------------------

WRONG_TOP_LEVEL = [b"null", b"[]", b"[1, 2]", b'"records"', b"42", b"true", b"{}"]


@pytest.mark.parametrize("body", WRONG_TOP_LEVEL)
def test_wrong_top_level_types_are_422(body):
    for parse in (API.parse_records, API.parse_invocations, API.parse_feedback):
        assert refused(lambda parse=parse: parse(body)).status == 422


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"records": {"amount": 1}}', "records"),
        (b'{"records": []}', "records"),
        (b'{"records": [1]}', "records[0]"),
        (b'{"records": [null]}', "records[0]"),
        (b'{"records": [{}]}', "records[0]"),
        (b'{"rows": []}', "records"),
    ],
)
def test_wrong_shapes_for_predict_are_422_naming_the_location(body, words):
    error = refused(lambda: API.parse_records(body))
    assert error.status == 422 and words in error.message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hour": "3"}, "hour"),  # strings are not coerced
        ({"hour": 3.5}, "hour"),
        ({"is_foreign": "true"}, "is_foreign"),
        ({"is_foreign": 1}, "is_foreign"),
        ({"amount": "12.5"}, "amount"),
        ({"amount": [1]}, "amount"),
        ({"channel": 7}, "channel"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_wrong_value_types_are_422_naming_the_field(change, field):
    error = refused(lambda: API.parse_records(records_body(**change)))
    assert error.status == 422 and f"records[0].{field}" in error.message


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({DF_RECORDS: "x"}, DF_RECORDS),
        ({DF_RECORDS: []}, "at least one record"),
        ({DF_SPLIT: [1]}, DF_SPLIT),
        ({DF_SPLIT: {SPLIT_COLUMNS: [1, [2]], SPLIT_DATA: [[1, 2]]}}, DF_SPLIT),
        ({DF_SPLIT: {SPLIT_COLUMNS: [{"a": 1}], SPLIT_DATA: [[1]]}}, DF_SPLIT),
        ({DF_SPLIT: {SPLIT_COLUMNS: ["a", "a"], SPLIT_DATA: [[1, 2]]}}, DF_SPLIT),
        ({DF_SPLIT: {SPLIT_COLUMNS: ["a"], SPLIT_DATA: [[1, 2]]}}, DF_SPLIT),
        ({INPUTS: {"a": [1], "b": [1, 2]}}, INPUTS),
        ({INPUTS: {}}, INPUTS),
        ({INPUTS: "x"}, INPUTS),
        ({INSTANCES: []}, "at least one record"),
        ({INSTANCES: [1]}, "[0]"),
        ({"rows": []}, "unsupported key 'rows'"),
        ({INPUTS: [], DF_RECORDS: []}, "exactly one"),
    ],
)
def test_wrong_mlflow_payloads_are_422(payload, words):
    error = refused(lambda: API.parse_invocations(json.dumps(payload).encode()))
    assert error.status == 422 and words in error.message


# --- sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize("api", [API, BATCH], ids=["predict", "batch"])
def test_content_length_over_the_limit_is_413_before_reading(api):
    error = refused(lambda: api.check_size(str(api.max_body_bytes + 1)))
    assert error.status == 413 and f"limit of {api.max_body_bytes} bytes" in error.message
    api.check_size(str(api.max_body_bytes))  # at the limit: fine
    api.check_size(None)  # chunked: checked on the body


@pytest.mark.parametrize(
    "value", ["abc", "-5", "1e9", " 12", "١٢", "0x10", "99999999999999999999999"]
)
def test_a_bad_content_length_is_400_or_413(value):
    error = refused(lambda: API.check_size(value))
    assert error.status in (400, 413)
    if error.status == 400:
        assert "Content-Length" in error.message


def test_oversized_bodies_are_413_before_parsing():
    garbage = b"{" * (API.max_body_bytes + 1)  # would be a 400 if it were parsed
    for parse in (API.parse_records, API.parse_invocations):
        assert refused(lambda parse=parse: parse(garbage)).status == 413
    assert refused(lambda: API.parse_feedback(b" " * 5_000)).status == 413
    batch_garbage = b"\x00" * (BATCH.max_body_bytes + 1)
    for kind in ("text/csv", PARQUET, "application/json"):
        error = refused(lambda kind=kind: BATCH.parse_table(batch_garbage, kind))
        assert error.status == 413


def test_too_many_records_is_413():
    body = json.dumps({RECORDS: [RECORD] * (API.max_rows + 1)}).encode()
    assert refused(lambda: API.parse_records(body[: API.max_body_bytes])).status in (400, 413)
    small = ServiceApi(SPEC, 2)
    three = json.dumps({RECORDS: [RECORD] * 3}).encode()
    assert "too many records" in refused(lambda: small.parse_records(three)).message
    inputs = json.dumps({INPUTS: [RECORD] * 3}).encode()
    assert refused(lambda: small.parse_invocations(inputs)).status == 413
    rows = BASE.to_csv(index=False).encode()
    assert "too many rows" in refused(lambda: small.parse_table(rows, "text/csv")).message


# --- CSV and Parquet --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"", "text/csv"),
        (b'amount,hour\n1,2\n"unterminated', "text/csv"),
        (b"\xff\xfe\x00\x01", "text/csv"),
        (b"amount\n\xff\xfe\n", "application/csv"),
        (b"", PARQUET),
        (b"PAR1garbagePAR1", PARQUET),
        (b"not parquet at all", "application/x-parquet"),
        (b"\x00" * 64, "application/octet-stream"),
    ],
)
def test_unreadable_tables_are_400(body, kind):
    error = refused(lambda: BATCH.parse_table(body, kind))
    assert error.status == 400 and f"cannot read the {kind} body" in error.message
    assert "\n" not in error.message and len(error.message) < 300


def test_duplicate_parquet_columns_are_400_with_a_one_line_message():
    table = pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], names=["amount", "amount"])
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    error = refused(lambda: BATCH.parse_table(buffer.getvalue(), PARQUET))
    assert error.status == 400 and "\n" not in error.message


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"amount,hour\n", "no rows"),
        (b"amount,amount\n1,2\n", "unknown columns: amount.1"),
        (b"amount\n1\n", "missing columns: hour, day_of_week"),
    ],
)
def test_tables_with_wrong_columns_are_422(body, words):
    error = refused(lambda: BATCH.parse_table(body, "text/csv"))
    assert error.status == 422 and words in error.message


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("hour", "1e300", "row 0, column 'hour': 1e+300 is not an integer in range"),
        ("hour", "inf", "row 0, column 'hour': inf is not an integer in range"),
        ("hour", "-inf", "row 0, column 'hour'"),
        ("hour", "9" * 400, "row 0, column 'hour'"),
        ("hour", "abc", "row 0, column 'hour'"),
        ("amount", "inf", "row 0, column 'amount': Input should be a finite number"),
        ("amount", "1e309", "row 0, column 'amount'"),
        ("channel", "x" * 1_000_000, "row 0, column 'channel'"),
        ("is_foreign", "maybe", "row 0, column 'is_foreign'"),
    ],
)
def test_bad_csv_values_are_422_naming_row_and_column(column, value, words):
    error = refused(lambda: BATCH.parse_table(csv_with(column, value), "text/csv"))
    assert error.status == 422 and words in error.message
    assert len(json.dumps(error.body())) < 20_000


@pytest.mark.parametrize(
    ("column", "values", "words"),
    [
        ("amount", pa.array([{"a": 1}] * 3), "column 'amount'"),
        ("hour", pa.array([[1, 2]] * 3), "column 'hour'"),
        ("hour", pa.array([float("inf")] * 3), "inf is not an integer in range"),
        ("hour", pa.array([1.0, 1e300, 2.0]), "row 1, column 'hour'"),
        ("hour", pa.array([2**64 - 1] * 3, pa.uint64()), "column 'hour'"),
        ("merchant_category", pa.array([b"\xff"] * 3), "column 'merchant_category'"),
        ("amount", pa.array([1] * 3, pa.timestamp("s")), "column 'amount'"),
        ("is_foreign", pa.array([3] * 3), "column 'is_foreign'"),
        ("card_present", pa.array([True, None, False]), "row 1, column 'card_present'"),
    ],
)
def test_bad_parquet_columns_are_422(column, values, words):
    error = refused(lambda: BATCH.parse_table(parquet(column, values), PARQUET))
    assert error.status == 422 and words in error.message


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("amount", pa.array([1, 2, 3], pa.decimal128(7, 2))),
        ("amount", pa.array([1.0, 2.0, 3.0], pa.float16())),
        ("channel", pa.array(["chip", "online", "chip"]).dictionary_encode()),
        ("hour", pa.array([1, 2, 3], pa.uint8())),
        ("customer_age", pa.array([20, None, 30])),
    ],
    ids=["decimal", "float16", "dictionary", "uint8", "nullable-int"],
)
def test_unusual_parquet_types_are_normalised_so_the_log_still_writes(column, values):
    """A Decimal column buffered with ordinary rows used to make every log write fail."""
    frame = BATCH.parse_table(parquet(column, values), PARQUET)
    plain = BATCH.parse_table(BASE.to_csv(index=False).encode(), "text/csv")
    stamp = pd.Timestamp.now(tz="UTC")
    both = pd.concat([frame.assign(**{TIMESTAMP: stamp}), plain.assign(**{TIMESTAMP: stamp})])
    with tempfile.TemporaryDirectory() as root:
        write_part(root, SPEC.name, PREDICTIONS_KIND, both, "test")
        assert len(read_log(root, SPEC.name, PREDICTIONS_KIND)) == 6


# --- content types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["application/xml", "text/plain", "multipart/form-data; boundary=x", "image/png"]
)
def test_unknown_content_types_are_415(kind):
    error = refused(lambda: BATCH.parse_table(b"<x/>", kind))
    assert error.status == 415 and "unsupported content type" in error.message
    assert "text/csv" in error.message  # says what is accepted
