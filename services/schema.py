"""Row validation generated from a spec: one pydantic model per service.

The same model validates HTTP request bodies (JSON bytes, strict types) and training
snapshots (DataFrames), so a row accepted by training is a row accepted by serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, TypeAdapter, create_model
from pydantic import ValidationError as ValidationError  # re-exported for callers

from services.spec import Feature, ServiceSpec

MAX_REPORTED_PROBLEMS = 50
MAX_EXACT_INTEGER = 2**53  # larger floats cannot be told apart from their integer neighbours


def _field_type(feature: Feature) -> Any:
    bounds = Field(ge=feature.min, le=feature.max, description=feature.description or None)
    match feature.type:
        case "numeric":
            base: Any = Annotated[float, bounds]
        case "integer":
            base = Annotated[StrictInt, bounds]
        case "boolean":
            base = StrictBool
        case "categorical":
            base = Literal[tuple(feature.categories or ())]
    return base | None if feature.nullable else base


def record_model(spec: ServiceSpec) -> type[BaseModel]:
    """A strict pydantic model of one input record: no extra fields, no NaN/Infinity."""
    fields: dict[str, Any] = {
        f.name: (_field_type(f), None if f.nullable else ...) for f in spec.features
    }
    config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    title = "".join(part.title() for part in spec.name.split("-")) + "Record"
    return create_model(title, __config__=config, **fields)


@dataclass(frozen=True)
class Problem:
    """One invalid value: which row, which column, what is wrong."""

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, column '{self.column}': {self.message}"


def problems_from(error: ValidationError, row_offset: int = 0) -> list[Problem]:
    """Flatten a list-of-records ValidationError into row/column problems."""
    problems = []
    for err in error.errors(include_url=False):
        loc = list(err["loc"])
        row = next((p for p in loc if isinstance(p, int)), -1)
        column = next((str(p) for p in reversed(loc) if isinstance(p, str)), "<record>")
        problems.append(Problem(row + row_offset, column, err["msg"]))
    return problems


def frame_to_records(spec: ServiceSpec, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-like dicts: missing values become None, whole floats in
    integer columns become ints (pandas stores an int column with gaps as float)."""
    columns = {}
    kinds = {f.name: f.type for f in spec.features}
    for name in frame.columns:
        col = frame[name]
        if kinds.get(name) == "integer" and pd.api.types.is_float_dtype(col):
            whole = col.isna() | (col == col.round())
            if whole.all():
                col = col.astype("Int64")
        columns[name] = col.astype(object).where(col.notna(), None)
    return pd.DataFrame(columns).to_dict("records")


def validate_features(spec: ServiceSpec, features: pd.DataFrame) -> list[Problem]:
    """Problems in a frame of feature columns (no target); rows are positions (0-based)."""
    if surely_valid(spec, features):
        return []
    adapter = TypeAdapter(list[record_model(spec)])  # type: ignore[valid-type]
    try:  # the record model names each problem, row by row
        adapter.validate_python(frame_to_records(spec, features))
    except ValidationError as exc:
        return problems_from(exc)
    return []


def validate_frame(spec: ServiceSpec, frame: pd.DataFrame) -> list[Problem]:
    """Problems in a frame of feature columns and the target; rows are positions (0-based)."""
    problems = validate_features(spec, frame.drop(columns=[spec.target], errors="ignore"))
    if spec.target in frame.columns:
        target = pd.to_numeric(frame[spec.target], errors="coerce")
        bad = target.isna()
        if spec.task == "binary":
            bad |= ~target.isin([0, 1])
        for row in np.flatnonzero(bad.to_numpy())[:MAX_REPORTED_PROBLEMS]:  # positions
            problems.append(
                Problem(
                    int(row),
                    spec.target,
                    "target must be a number" + (" in {0, 1}" if spec.task == "binary" else ""),
                )
            )
    else:
        problems.append(Problem(-1, spec.target, "target column is missing"))
    return problems


def surely_valid(spec: ServiceSpec, features: pd.DataFrame) -> bool:
    """Column-wise (vectorized) check that every row passes the record model.

    Conservative: True only when no row can fail; anything unusual (object columns of mixed
    types, extension dtypes it does not know) returns False and goes to the per-row model.
    """
    known = {f.name: f for f in spec.features}
    if not set(features.columns) <= known.keys():
        return False
    for feature in spec.features:
        if feature.name not in features:
            if not feature.nullable:
                return False
            continue
        if not _column_surely_valid(feature, features[feature.name]):
            return False
    return True


def _column_surely_valid(feature: Feature, column: pd.Series) -> bool:
    if feature.type == "categorical" and column.isin(feature.categories or ()).all():
        return True  # every value a category, so none missing: one pass, the usual case
    missing = column.isna().to_numpy()
    if missing.any() and not feature.nullable:
        return False
    present = column[~missing]
    if feature.type == "boolean":
        return pd.api.types.is_bool_dtype(column)
    if feature.type == "categorical":
        return bool(present.isin(feature.categories or ()).all())
    if pd.api.types.is_bool_dtype(column) or not (
        pd.api.types.is_integer_dtype(column) or pd.api.types.is_float_dtype(column)
    ):
        return False
    values = present.to_numpy(dtype="float64")
    if not np.isfinite(values).all():
        return False
    if feature.type == "integer" and not (
        (values == np.round(values)).all() and (np.abs(values) <= MAX_EXACT_INTEGER).all()
    ):
        return False
    low = -np.inf if feature.min is None else feature.min
    high = np.inf if feature.max is None else feature.max
    return bool(((values >= low) & (values <= high)).all())
