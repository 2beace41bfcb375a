"""A service on a team's own data, added as the README's recipe says: a folder with only
`service.yaml`, an entry in `params.yaml` and a snapshot (here the breast-cancer data set
that scikit-learn ships, so nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from sklearn.datasets import load_breast_cancer

from services.spec import SPEC_FILE

SERVICE = "tumour-diagnosis"
TARGET = "benign"
PARAMS_ENTRY = f"""\
  {SERVICE}:
    split: {{valid: 0.15, test: 0.2, seed: 42}}
    reference_rows: 300
"""


def snapshot_frame() -> pd.DataFrame:
    """The data set as a team would store it: snake_case feature columns, then the target."""
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    return frame.rename(columns={"target": TARGET})


def spec_document(name: str = SERVICE) -> dict[str, Any]:
    features = [
        {"name": column, "type": "numeric", "min": 0}
        for column in snapshot_frame().columns
        if column != TARGET
    ]
    return {
        "name": name,
        "description": "Whether a breast mass is benign, from a digitised image of it.",
        "task": "binary",
        "target": TARGET,
        "features": features,
        "model": {
            "params": {
                "objective": "binary:logistic",
                "eval_metric": "auc",
                "max_depth": 3,
                "eta": 0.1,
                "nthread": 1,
                "seed": 7,
            },
            "num_boost_round": 60,
        },
        "evaluation": {"metric": "roc_auc", "floor": 0.9},
        "monitoring": {"min_rows": 100},
    }


def add_service(root: Path, snapshot: bool = True) -> Path:
    """Write the service folder, its params.yaml entry and (unless told not to) the
    snapshot into the working tree `root`; returns the snapshot's path."""
    folder = root / "services" / SERVICE
    folder.mkdir(parents=True)
    (folder / SPEC_FILE).write_text(yaml.safe_dump(spec_document(), sort_keys=False))
    params = root / "params.yaml"
    params.write_text(params.read_text().rstrip("\n") + "\n" + PARAMS_ENTRY)
    path = root / "data" / SERVICE / "snapshot.parquet"
    if snapshot:
        path.parent.mkdir(parents=True, exist_ok=True)
        snapshot_frame().to_parquet(path, index=False)
    return path
