"""The current data: an inference-log window joined with feedback labels by request_id."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from services.inference_log import (
    FEEDBACK_KIND,
    LABEL,
    MODEL_VERSION,
    PREDICTIONS_KIND,
    REQUEST_ID,
    SHADOW,
    STABLE,
    TIMESTAMP,
    VARIANT,
    Kind,
    read_log,
)

log = logging.getLogger(__name__)
DEFAULT_SINCE = "24h"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`24h`, `90m`, `7d` (before now) or an ISO date/time (naive means UTC) -> aware UTC."""
    now = now or datetime.now(UTC)
    text = value.strip()
    match = _DURATION.match(text)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since '{value}': expected a duration like 24h, 90m, 7d or an ISO date/time"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class Window:
    """Rows the production version served since `since`, with labels where feedback came."""

    since: datetime
    frame: pd.DataFrame  # prediction rows (+ `label`, NaN when no feedback)
    other_versions_rows: int  # rows in the window served by other model versions

    @property
    def rows(self) -> int:
        return len(self.frame)

    @property
    def labelled(self) -> pd.DataFrame:
        return self.frame[self.frame[LABEL].notna()]


def _read(
    uri: str, service: str, kind: Kind, since: datetime, columns: list[str] | None
) -> pd.DataFrame:
    frame = read_log(uri, service, kind, since=since, columns=columns)
    if frame.empty or TIMESTAMP not in frame:
        return frame
    stamps = pd.to_datetime(frame[TIMESTAMP], utc=True)
    return frame.assign(**{TIMESTAMP: stamps})[stamps >= pd.Timestamp(since)]


def read_since(
    uri: str, service: str, kind: Kind, since: datetime, columns: list[str] | None = None
) -> pd.DataFrame:
    """read_log with the day-partition pruning; tolerates naive (UTC) timestamps in the log."""
    try:
        return _read(uri, service, kind, since, columns)
    except TypeError:  # naive timestamps in the log: compare as naive UTC
        frame = read_log(uri, service, kind, since=since.replace(tzinfo=None), columns=columns)
        return frame.assign(**{TIMESTAMP: pd.to_datetime(frame[TIMESTAMP], utc=True)})


def load_window(uri: str, service: str, since: datetime, model_version: str) -> Window:
    """Predictions of `model_version` since `since`, joined with the latest label per request."""
    predictions = read_since(uri, service, PREDICTIONS_KIND, since)
    feedback = read_since(uri, service, FEEDBACK_KIND, since)
    if predictions.empty:
        return Window(since, predictions.assign(**{LABEL: pd.Series(dtype=float)}), 0)
    if VARIANT in predictions:  # a shadow's rows repeat the request ids of the answered ones
        predictions = predictions[predictions[VARIANT].astype("string").fillna(STABLE) != SHADOW]
    predictions = predictions.drop_duplicates(REQUEST_ID, keep="last")
    other = 0
    if MODEL_VERSION in predictions and predictions[MODEL_VERSION].notna().any():
        served = predictions[MODEL_VERSION].astype(str) == str(model_version)
        other = int((~served).sum())
        if other:
            log.warning(
                "%s: %d rows in the window were served by versions other than production v%s "
                "and are left out",
                service,
                other,
                model_version,
            )
        predictions = predictions[served]
    labels = _latest_labels(feedback)
    frame = predictions.merge(labels, on=REQUEST_ID, how="left")
    return Window(since, frame.reset_index(drop=True), other)


def _latest_labels(feedback: pd.DataFrame) -> pd.DataFrame:
    if feedback.empty or LABEL not in feedback:
        return pd.DataFrame({REQUEST_ID: pd.Series(dtype=str), LABEL: pd.Series(dtype=float)})
    latest = feedback.sort_values(TIMESTAMP).drop_duplicates(REQUEST_ID, keep="last")
    return latest[[REQUEST_ID, LABEL]]


latest_labels = _latest_labels  # the latest label per REQUEST_ID (the rollout analysis joins it)
