"""`mlops batch-score`: Ray Data scores a file with the serving model code, like /batch does."""

from __future__ import annotations

import httpx
import pandas as pd
import pytest

from services.datagen import generate
from services.settings import get_settings
from services.spec import load_spec
from serving.batch_score import batch_score

pytestmark = pytest.mark.integration
SERVICE = "fraud-detection"


def test_batch_score_writes_the_same_predictions_as_the_endpoint(served, tmp_path):
    spec = load_spec(SERVICE)
    frame = generate(spec, 3_000, seed=21)[spec.feature_names]
    source = tmp_path / "input.parquet"
    frame.to_parquet(source, index=False)
    result = batch_score(
        SERVICE, str(source), str(tmp_path / "out"), served[SERVICE], get_settings().ray_address
    )
    assert result["rows"] == 3_000 and result["version"] == served[SERVICE]
    scored = pd.read_parquet(tmp_path / "out")
    assert len(scored) == 3_000
    assert set(scored["model_version"]) == {served[SERVICE]}
    head = frame.head(20)
    response = httpx.post(
        f"{get_settings().serve_url}/{SERVICE}/batch",
        content=head.to_csv(index=False),
        headers={"content-type": "text/csv"},
        timeout=60,
    )
    online = [p["probability"] for p in response.json()["predictions"]]
    offline = scored.merge(head.reset_index(), on=list(head.columns)).sort_values("index")
    assert offline["probability"].round(5).tolist() == pd.Series(online).round(5).tolist()
