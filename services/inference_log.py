"""The inference log: every prediction, every feedback label and every refused request, as
Parquet under an fsspec URI.

Layout (one file per flush, never rewritten, so writers need no coordination):
    <uri>/<service>/predictions/date=YYYY-MM-DD/<writer>-<seq>.parquet   answered rows
    <uri>/<service>/feedback/date=YYYY-MM-DD/<writer>-<seq>.parquet      labels
    <uri>/<service>/requests/date=YYYY-MM-DD/<writer>-<seq>.parquet      refused and failed
Serving writes it (buffered, off the request path); monitoring reads it. The column names
below are the stored format: parts already written keep them, so they change only with a
migration of the log.

Every request leaves one record (`REQUEST_COLUMNS`): an answered one on each of its rows in
`predictions` (they share its `request` id), a refused or failed one (4xx, 5xx, cancelled) as
one row in `requests`, without the body.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pandas.api.types import is_list_like

Kind = Literal["predictions", "feedback", "requests"]
#: Log of every served row: its features, the columns of PREDICTION_COLUMNS and the outputs.
PREDICTIONS_KIND: Kind = "predictions"
#: Log of every label sent to /feedback: the columns of FEEDBACK_COLUMNS.
FEEDBACK_KIND: Kind = "feedback"
#: Log of every refused or failed request: the columns of REFUSED_COLUMNS, never the body.
REQUESTS_KIND: Kind = "requests"
Variant = Literal["stable", "canary", "shadow"]
STABLE: Variant = "stable"  # the version the manifest names: every answer outside a rollout
CANARY: Variant = "canary"  # a rollout's candidate, answering its share of requests
SHADOW: Variant = "shadow"  # a rollout's candidate, scoring requests whose answers only log
Endpoint = Literal["predict", "invocations", "batch"]
REALTIME_ENDPOINTS: tuple[Endpoint, ...] = ("predict", "invocations")  # latency SLOs judge these

#: Column: the id of one served row (`<request uuid>-<row>`), the key feedback joins on.
REQUEST_ID = "request_id"
#: Column: when the row was served or the label received (UTC); parts are partitioned by its day.
TIMESTAMP = "timestamp"
#: Column: the service (registered model name) that served the row.
SERVICE = "service"
#: Column: the registered version that served the row.
MODEL_VERSION = "model_version"
#: Column: the endpoint that served the row (predict, invocations, batch).
ENDPOINT = "endpoint"
#: Column: the request's id, shared by the rows it answered.
REQUEST = "request"
#: Column: the variant that answered (stable; canary or shadow during a rollout).
VARIANT = "variant"
#: Column: the HTTP status of the response.
STATUS = "status"
#: Column: the rows the request was answered with (0 when refused).
ROWS = "rows"
#: Column: latency in the replica, from the request's arrival to its response being ready.
LATENCY_MS = "latency_ms"
#: Column: why a request was refused or failed (bounded; never the body).
ERROR = "error"
#: Column: the model output, a class (binary) or a value (regression).
PREDICTION = "prediction"
#: Column: the probability of the positive class (binary services only).
PROBABILITY = "probability"
#: Column: the true target sent to /feedback.
LABEL = "label"

REQUEST_COLUMNS = (
    REQUEST,
    TIMESTAMP,
    SERVICE,
    ENDPOINT,
    MODEL_VERSION,
    VARIANT,
    STATUS,
    ROWS,
    LATENCY_MS,
)
PREDICTION_COLUMNS = (REQUEST_ID, *REQUEST_COLUMNS)  # + features, prediction (+ probability)
FEEDBACK_COLUMNS = (REQUEST_ID, TIMESTAMP, SERVICE, LABEL)
REFUSED_COLUMNS = (*REQUEST_COLUMNS, ERROR)
# names a feature may not take: the log columns written next to it
LOG_COLUMNS = frozenset({*PREDICTION_COLUMNS, *REFUSED_COLUMNS, PREDICTION, PROBABILITY})


def kind_root(uri: str, service: str, kind: Kind) -> str:
    return f"{uri.rstrip('/')}/{service}/{kind}"


def to_arrow(rows: pd.DataFrame | pa.Table) -> pa.Table:
    """The rows as an Arrow table (a frame's index is not kept)."""
    return rows if isinstance(rows, pa.Table) else pa.Table.from_pandas(rows, preserve_index=False)


def with_columns(frame: pd.DataFrame | pa.Table, columns: Mapping[str, Any]) -> pa.Table:
    """`frame` as Arrow with `columns` added: Arrow arrays (kept as they are), other arrays (a
    value per row) or scalars (one value on every row, repeated by Arrow: no column of Python
    objects to convert)."""
    table = to_arrow(frame)
    for name, value in columns.items():
        if isinstance(value, pa.Array | pa.ChunkedArray):
            column = value
        elif is_list_like(value):
            column = pa.array(value)
        else:
            column = pa.repeat(pa.scalar(value), len(table))
        table = table.append_column(name, column)
    return table


def rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as a table, with a column for every key of any row (Arrow's from_pylist takes the
    first row's keys)."""
    if len(set().union(*rows)) == len(rows[0]):  # the usual case: every row has the same keys
        return pa.Table.from_pylist(rows)
    names = dict.fromkeys(name for row in rows for name in row)
    return pa.Table.from_pydict({name: [row.get(name) for row in rows] for name in names})


def concat_parts(parts: list[pd.DataFrame | pa.Table]) -> pa.Table:
    """Parts as one table. Flushes may differ in columns and types (a column all null in one,
    ints in one and floats in the next): Arrow adds missing columns as nulls, widens types."""
    return pa.concat_tables([to_arrow(part) for part in parts], promote_options="permissive")


def write_part(
    uri: str, service: str, kind: Kind, rows: pd.DataFrame | pa.Table, writer: str
) -> str:
    """Write one immutable Parquet part under a new name; returns its URI. `rows` need a
    `timestamp` column."""
    name = f"{writer}-{datetime.now(UTC):%H%M%S%f}-{uuid.uuid4().hex[:6]}"
    return commit_part(uri, service, kind, rows, name)


def commit_part(
    uri: str, service: str, kind: Kind, rows: pd.DataFrame | pa.Table, name: str
) -> str:
    """Write `rows` as the part `name` unless it is already there; returns its URI.

    Exactly once for a given name and rows, however often it is retried: the part's folder
    (the day of its earliest timestamp) depends on the rows alone, a part already committed is
    left as it is, and one is committed by a rename of a finished temporary file (a copy in
    one request on object stores), so readers, who list `*.parquet`, never see a partial part.
    """
    table = to_arrow(rows)
    first = pc.min(table.column(TIMESTAMP)).as_py()
    path = f"{kind_root(uri, service, kind)}/date={pd.Timestamp(first):%Y-%m-%d}/{name}.parquet"
    fs, fs_path = fsspec.core.url_to_fs(path)
    if fs.exists(fs_path):
        return path
    fs.makedirs(fs_path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(fs_path + ".tmp", "wb") as handle:
        pq.write_table(table, handle)
    fs.mv(fs_path + ".tmp", fs_path)
    return path


def read_log(
    uri: str,
    service: str,
    kind: Kind,
    since: datetime | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """All rows of one kind (optionally from `since` on); an empty frame when there are none."""
    fs, root = fsspec.core.url_to_fs(kind_root(uri, service, kind))
    fs.invalidate_cache()  # an object store's listings are cached per process: list anew
    files = sorted(fs.glob(f"{root}/date=*/*.parquet"))
    if since is not None:
        first_day = since.strftime("%Y-%m-%d")
        files = [f for f in files if f.split("date=")[1][:10] >= first_day]
    if not files:
        return pd.DataFrame(columns=list(columns or ()))
    parts = [_read_part(fs, f, columns) for f in files]
    frame = concat_parts(parts).to_pandas()  # one conversion to pandas
    if since is not None:
        frame = frame[frame[TIMESTAMP] >= pd.Timestamp(since)]
    return frame.reset_index(drop=True)


def _read_part(fs: fsspec.AbstractFileSystem, path: str, columns: list[str] | None) -> pa.Table:
    """One part; of `columns`, those it has (parts written before a column existed lack it)."""
    if columns is None:
        return pq.read_table(path, filesystem=fs)
    with fs.open(path, "rb") as handle:
        part = pq.ParquetFile(handle)
        return part.read(columns=[c for c in columns if c in part.schema_arrow.names])
