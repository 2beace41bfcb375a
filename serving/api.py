"""HTTP payloads of a service: parse and validate requests, shape responses. No Ray here.

Every rejection is a `RequestError` with a status and a JSON body naming the problem:
400 unreadable body, 413 too large, 415 unknown content type, 422 invalid values.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    create_model,
)

from services.inference_log import LABEL, PREDICTION, PROBABILITY, REQUEST_ID
from services.schema import MAX_EXACT_INTEGER, record_model, validate_features
from services.scoring import prediction_frame
from services.spec import ServiceSpec
from serving.protocol import (
    DF_RECORDS,
    DF_SPLIT,
    INPUTS,
    INSTANCES,
    RECORDS,
    SPLIT_COLUMNS,
    SPLIT_DATA,
    SUPPORTED_FORMATS,
    quoted,
)

BYTES_PER_ROW = 1_024  # generous upper bound of one JSON record; bodies above rows x this are 413
MAX_ERRORS = 20
JSON_TYPE = "application/json"
CSV_TYPES = ("text/csv", "application/csv")
PARQUET_TYPE = "application/vnd.apache.parquet"
PARQUET_ANSWER_TYPES = (PARQUET_TYPE, "application/x-parquet")  # an Accept header naming one
PARQUET_TYPES = (*PARQUET_ANSWER_TYPES, "application/octet-stream")


class RequestError(Exception):
    """A request that is refused: HTTP status + JSON body."""

    def __init__(
        self, status: int, message: str, detail: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.detail = status, message, detail or []

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "detail": self.detail}


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def from_validation(error: ValidationError, max_rows: int) -> RequestError:
    """422 naming record index and field; 413 when the list is longer than allowed."""
    errors = error.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return RequestError(400, f"body is not valid JSON: {errors[0]['msg']}")
    if any(e["type"] == "too_long" and len(e["loc"]) == 1 for e in errors):
        return RequestError(413, f"too many records: at most {max_rows} per request")
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
    first = errors[0]
    summary = f"{_loc(first['loc']) or 'body'}: {first['msg']}"
    if len(errors) > 1:
        summary += f" (and {len(errors) - 1} more)"
    return RequestError(422, summary, detail[:MAX_ERRORS])


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    request_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    label: float | int | StrictBool


class ServiceApi:
    """Validation and response shaping of one service, built once per replica."""

    def __init__(self, spec: ServiceSpec, max_rows: int) -> None:
        self.spec, self.max_rows = spec, max_rows
        self.record = record_model(spec)
        self.max_body_bytes = max_body_bytes(max_rows)
        records = (list[self.record], Field(min_length=1, max_length=max_rows))  # type: ignore[name-defined]
        self.request_model = create_model(
            f"{self.record.__name__.removesuffix('Record')}Request",
            __config__=ConfigDict(extra="forbid", strict=True),
            **{RECORDS: records},
        )
        self._records_adapter = TypeAdapter(list[self.record])  # type: ignore[name-defined]

    def openapi_body(self) -> dict[str, Any]:
        """OpenAPI `requestBody` of `{"records": [...]}` (inlined: the route reads raw bytes)."""
        schema = self.request_model.model_json_schema()
        record = schema.pop("$defs")[self.record.__name__]
        schema["properties"][RECORDS]["items"] = record
        return {"requestBody": {"required": True, "content": {JSON_TYPE: {"schema": schema}}}}

    # --- requests --------------------------------------------------------------------------

    def check_size(self, content_length: str | None, body: bytes | None = None) -> None:
        """413 when the declared (Content-Length) or actual size exceeds the limit."""
        check_size(content_length, self.max_rows, body)

    def parse_records(self, body: bytes) -> list[dict[str, Any]]:
        """`{"records": [...]}` -> validated records (dicts, spec order)."""
        self.check_size(None, body)
        try:
            request = self.request_model.model_validate_json(body)
        except ValidationError as exc:
            raise from_validation(exc, self.max_rows) from None
        return [r.__dict__ for r in getattr(request, RECORDS)]

    def parse_invocations(self, body: bytes) -> list[dict[str, Any]]:
        """MLflow scoring protocol: dataframe_split, dataframe_records, inputs or instances."""
        self.check_size(None, body)
        try:  # pydantic's parser: bounded nesting depth, no RecursionError, faster than json
            payload = pydantic_core.from_json(body)
        except ValueError as exc:
            raise RequestError(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict) or len(payload) != 1:
            raise RequestError(
                422, f"body must have exactly one of the keys {quoted(SUPPORTED_FORMATS)}"
            )
        ((key, value),) = payload.items()
        records = _mlflow_records(key, value)
        if len(records) > self.max_rows:
            raise RequestError(413, f"too many records: at most {self.max_rows} per request")
        try:
            items = self._records_adapter.validate_python(records)
        except ValidationError as exc:
            raise from_validation(exc, self.max_rows) from None
        if not items:
            raise RequestError(422, f"{key}: at least one record is required")
        return [r.__dict__ for r in items]

    def parse_table(self, body: bytes, content_type: str) -> pd.DataFrame:
        """Batch body: JSON records, CSV or Parquet -> validated frame of feature columns."""
        self.check_size(None, body)
        kind = content_type.split(";")[0].strip().lower()
        if kind in (JSON_TYPE, ""):
            return pd.DataFrame.from_records(
                self.parse_records(body), columns=self.spec.feature_names
            )
        try:
            if kind in CSV_TYPES:
                frame = pd.read_csv(io.BytesIO(body))
            elif kind in PARQUET_TYPES:
                frame = pd.read_parquet(io.BytesIO(body))
            else:
                raise RequestError(
                    415,
                    f"unsupported content type '{kind}': use application/json, "
                    "text/csv or application/vnd.apache.parquet",
                )
        except RequestError:
            raise
        except Exception as exc:  # pandas/pyarrow parse errors of many types
            raise RequestError(400, f"cannot read the {kind} body: {_brief(exc)}") from None
        if len(frame) > self.max_rows:
            raise RequestError(413, f"too many rows: {len(frame)} > {self.max_rows} per request")
        if frame.empty:
            raise RequestError(422, "the table has no rows")
        unknown = sorted(str(c) for c in set(frame.columns) - set(self.spec.feature_names))
        if unknown:
            raise RequestError(422, f"unknown columns: {_names(unknown)}")
        missing = [f.name for f in self.spec.features if not f.nullable and f.name not in frame]
        if missing:
            raise RequestError(422, f"missing columns: {_names(missing)}")
        frame = frame.reindex(columns=self.spec.feature_names)
        _check_integer_columns(self.spec, frame)
        problems = validate_features(self.spec, frame)
        if problems:
            detail = [{"loc": ["rows", p.row, p.column], "msg": p.message} for p in problems]
            raise RequestError(
                422,
                f"{problems[0]} (and {len(problems) - 1} more)"
                if len(problems) > 1
                else str(problems[0]),
                detail[:MAX_ERRORS],
            )
        return _canonical(self.spec, frame)

    def parse_feedback(self, body: bytes) -> dict[str, Any]:
        """`{"request_id", "label"}`; the label must fit the task (binary: 0 or 1)."""
        if len(body) > 4_096:
            raise RequestError(413, "feedback body exceeds 4096 bytes")
        try:
            item = Feedback.model_validate_json(body)
        except ValidationError as exc:
            raise from_validation(exc, 1) from None
        try:
            label = float(item.label)
        except OverflowError:
            raise RequestError(
                422, f"{LABEL}: number too large", [{"loc": [LABEL], "msg": "number too large"}]
            ) from None
        if self.spec.task == "binary" and label not in (0.0, 1.0):
            raise RequestError(
                422,
                f"{LABEL}: must be 0 or 1 for a binary service",
                [{"loc": [LABEL], "msg": "must be 0 or 1"}],
            )
        return {REQUEST_ID: item.request_id, LABEL: label}

    # --- responses -------------------------------------------------------------------------

    def predictions(self, raw: np.ndarray, request_ids: list[str]) -> list[dict[str, Any]]:
        """Per-row predictions with their request ids (plain loop: cheapest for small requests)."""
        if self.spec.task == "binary":
            labels = (raw >= self.spec.evaluation.decision_threshold).astype(np.int64).tolist()
            return [
                {REQUEST_ID: rid, PREDICTION: label, PROBABILITY: p}
                for rid, label, p in zip(request_ids, labels, raw.tolist(), strict=True)
            ]
        return [
            {REQUEST_ID: rid, PREDICTION: float(p)}
            for rid, p in zip(request_ids, raw.tolist(), strict=True)
        ]

    def prediction_columns(self, raw: np.ndarray) -> dict[str, pa.Array]:
        """The same predictions as Arrow columns, for whole tables (logged, answered)."""
        outputs = prediction_frame(self.spec, raw)
        return {name: pa.array(outputs[name].to_numpy()) for name in outputs.columns}


def answers_parquet(accept: str | None) -> bool:
    """Whether an Accept header names Parquet (batch answers only; JSON otherwise)."""
    kinds = (part.split(";")[0].strip().lower() for part in (accept or "").split(","))
    return any(kind in PARQUET_ANSWER_TYPES for kind in kinds)


def max_body_bytes(max_rows: int) -> int:
    return max_rows * BYTES_PER_ROW + 1_024


def check_size(content_length: str | None, max_rows: int, body: bytes | None = None) -> None:
    """413 when the declared (Content-Length) or actual size exceeds what `max_rows` allow."""
    size = len(body) if body is not None else parse_content_length(content_length)
    limit = max_body_bytes(max_rows)
    if size > limit:
        raise RequestError(
            413, f"body of {size} bytes exceeds the limit of {limit} bytes ({max_rows} records)"
        )


def parse_content_length(value: str | None) -> int:
    """The declared body size; 400 when the header is not a non-negative integer."""
    if value is None or value == "":
        return 0
    if not value.isascii() or not value.isdigit():
        raise RequestError(400, f"invalid Content-Length header: {value[:40]!r}")
    return int(value)


def _brief(exc: Exception, limit: int = 200) -> str:
    """First line of a parser's message, bounded (some echo whole schemas)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _names(names: list[str], shown: int = 10, width: int = 40) -> str:
    """A bounded list of (client-supplied) names for an error message."""
    listed = ", ".join(n if len(n) <= width else n[:width] + "..." for n in names[:shown])
    return listed + (f" (and {len(names) - shown} more)" if len(names) > shown else "")


def _check_integer_columns(spec: ServiceSpec, frame: pd.DataFrame) -> None:
    """Floats in integer columns that no integer equals (inf, beyond 2**53): 422, not a crash."""
    for feature in spec.features:
        column = frame[feature.name]
        if feature.type != "integer" or not pd.api.types.is_float_dtype(column):
            continue
        bad = np.flatnonzero((column.abs() > MAX_EXACT_INTEGER).to_numpy())  # NaN is not bad
        if bad.size:
            row = int(bad[0])
            message = f"{column.iloc[row]} is not an integer in range"
            raise RequestError(
                422,
                f"row {row}, column '{feature.name}': {message}",
                [{"loc": ["rows", row, feature.name], "msg": message}],
            )


def _canonical(spec: ServiceSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """Validated columns in plain dtypes: a Decimal, float16 or dictionary column of a Parquet
    body would otherwise break the inference-log write of every frame buffered with it."""
    columns = {}
    for feature in spec.features:
        column = frame[feature.name]
        if feature.type == "integer" and pd.api.types.is_integer_dtype(column):
            column = column.astype("int64", copy=False)
        elif feature.type in ("numeric", "integer"):
            column = column.astype("float64", copy=False)
        elif column.dtype != object and (
            feature.type == "categorical" or not pd.api.types.is_bool_dtype(column)
        ):
            column = column.astype(object).where(column.notna(), None)
        columns[feature.name] = column
    return pd.DataFrame(columns, index=frame.index)


def new_request() -> str:
    """A request's id (a uuid): the `request` column of its record, the prefix of its rows' ids."""
    return uuid.uuid4().hex


def row_ids(request: str, count: int) -> list[str]:
    """`<request>-<row>`: unique per row, shared prefix per request (a plain loop: cheapest
    for the few rows of a real-time request)."""
    return [f"{request}-{row}" for row in range(count)]


def row_id_column(request: str, count: int) -> pa.Array:
    """`row_ids` as an Arrow column for a table, built in numpy without a Python string per
    row: the rows whose numbers have the same count of digits form one fixed-width block."""
    prefix = np.frombuffer(f"{request}-".encode(), np.uint8)
    blocks, widths, sizes = [np.empty(0, np.uint8)], [], []
    start, digits = 0, 1
    while start < count:
        stop = min(count, 10**digits)
        rows = np.arange(start, stop)
        block = np.empty((stop - start, prefix.size + digits), np.uint8)
        block[:, : prefix.size] = prefix
        for place in range(digits):  # the digits of each row number, most significant first
            block[:, prefix.size + place] = rows // 10 ** (digits - 1 - place) % 10 + ord("0")
        blocks.append(block.ravel())
        widths.append(block.shape[1])
        sizes.append(stop - start)
        start, digits = stop, digits + 1
    offsets = np.zeros(count + 1, np.int32)
    np.cumsum(np.repeat(widths, sizes), out=offsets[1:])
    data = np.concatenate(blocks)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data))


def now() -> datetime:
    return datetime.now(UTC)


def _mlflow_records(key: str, value: Any) -> list[Any]:
    if key == DF_RECORDS:
        if isinstance(value, list):
            return value
        raise RequestError(422, f"{DF_RECORDS}: must be a list of records")
    if key == DF_SPLIT:
        columns, data = (
            (value.get(SPLIT_COLUMNS), value.get(SPLIT_DATA))
            if isinstance(value, dict)
            else 2 * (None,)
        )
        if (
            isinstance(columns, list)
            and len(set(map(str, columns))) == len(columns)
            and all(isinstance(column, str) for column in columns)
            and isinstance(data, list)
            and all(isinstance(row, list) and len(row) == len(columns) for row in data)
        ):
            return [dict(zip(columns, row, strict=True)) for row in data]
        raise RequestError(
            422,
            f"{DF_SPLIT}: needs '{SPLIT_COLUMNS}' (names) and '{SPLIT_DATA}' rows of equal length",
        )
    if key in (INPUTS, INSTANCES):
        if isinstance(value, list):
            return value
        if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
            lengths = {len(v) for v in value.values()}
            if len(lengths) == 1:
                return [
                    dict(zip(value, row, strict=True)) for row in zip(*value.values(), strict=True)
                ]
        raise RequestError(
            422, f"{key}: must be a list of records or a mapping of equal-length columns"
        )
    raise RequestError(422, f"unsupported key '{key}': use {quoted(SUPPORTED_FORMATS)}")
