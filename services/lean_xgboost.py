"""XGBoost for scoring, imported without scikit-learn.

`import xgboost` imports scikit-learn (and SciPy's statistics with it) whenever it is installed,
only to offer its scikit-learn estimators (`XGBClassifier`, ...), which scoring never uses: that
is most of the import's time, so of a replica's and a batch scorer's start
(benchmarks/REPLICA_START.md). Scoring modules import XGBoost from here. A process that imported
scikit-learn first gets XGBoost as usual, and scikit-learn imports as usual afterwards.
"""

from __future__ import annotations

import sys

if "xgboost" in sys.modules or "sklearn" in sys.modules:
    import xgboost
else:
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # XGBoost's "not installed" path
    try:
        import xgboost
    finally:
        del sys.modules["sklearn"]

xgb = xgboost
