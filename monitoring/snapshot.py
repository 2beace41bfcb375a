"""The next training snapshot: the previous one + labelled production rows, deduplicated and
validated against the spec (rows that fail are dropped and counted, never written)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from services.inference_log import LABEL
from services.schema import validate_features
from services.spec import ServiceSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotStats:
    previous_rows: int
    labelled_rows: int  # labelled production rows offered
    invalid_rows: int  # dropped: failed the spec's validation
    duplicate_rows: int  # dropped: already in the snapshot (or repeated in the window)
    added_rows: int

    @property
    def total_rows(self) -> int:
        return self.previous_rows + self.added_rows


def labelled_rows(spec: ServiceSpec, labelled: pd.DataFrame, label: str = LABEL) -> pd.DataFrame:
    """Production rows as training rows: the spec's features + the label as the target."""
    frame = labelled[spec.feature_names].copy()
    frame[spec.target] = pd.to_numeric(labelled[label], errors="coerce").to_numpy()
    return frame.reset_index(drop=True)


def _like(frame: pd.DataFrame, template: pd.DataFrame) -> pd.DataFrame:
    """Cast columns to the snapshot's dtypes where the values allow it."""
    out = frame.copy()
    for name, dtype in template.dtypes.items():
        if name in out and out[name].dtype != dtype:
            try:
                out[name] = out[name].astype(dtype)
            except (TypeError, ValueError):
                log.debug("column %s kept as %s (not castable to %s)", name, out[name].dtype, dtype)
    return out


def _row_hashes(frame: pd.DataFrame) -> pd.Series:
    return pd.util.hash_pandas_object(frame, index=False)


def valid_positions(spec: ServiceSpec, frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask of rows that pass the spec (features and target)."""
    keep = np.ones(len(frame), dtype=bool)
    target = pd.to_numeric(frame[spec.target], errors="coerce")
    bad_target = target.isna() | ~np.isfinite(target.fillna(0))
    if spec.task == "binary":
        bad_target |= ~target.isin([0, 1])
    keep &= ~bad_target.to_numpy()
    for problem in validate_features(spec, frame.drop(columns=[spec.target])):
        if problem.row >= 0:
            keep[problem.row] = False
    return keep


def merge_snapshot(
    spec: ServiceSpec, previous: pd.DataFrame, new_rows: pd.DataFrame
) -> tuple[pd.DataFrame, SnapshotStats]:
    """previous + valid, not-yet-seen new rows (columns and dtypes of the previous snapshot)."""
    columns = [*spec.feature_names, spec.target]
    previous = previous[columns]
    candidates = _like(new_rows[columns].reset_index(drop=True), previous)
    keep = valid_positions(spec, candidates)
    valid = candidates[keep].reset_index(drop=True)
    valid = _like(valid, previous)  # binary targets become ints once NaNs are gone
    hashes = _row_hashes(valid)
    fresh = ~hashes.isin(set(_row_hashes(previous))) & ~hashes.duplicated()
    added = valid[fresh.to_numpy()]
    merged = pd.concat([previous, added], ignore_index=True)
    stats = SnapshotStats(
        previous_rows=len(previous),
        labelled_rows=len(new_rows),
        invalid_rows=int((~keep).sum()),
        duplicate_rows=int(len(valid) - len(added)),
        added_rows=len(added),
    )
    log.info("%s snapshot: %s", spec.name, stats)
    return merged, stats
