"""The kinds of drift the data generator simulates (`mlops generate --drift`, the demo)."""

from __future__ import annotations

from typing import Literal, get_args

Drift = Literal["none", "covariate", "new-categories", "concept"]
DRIFT_KINDS: tuple[str, ...] = get_args(Drift)
