"""The pyfunc MLflow clients load predicts exactly as the model serving loads without MLflow."""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import pytest

from services.datagen import generate
from services.model import ServiceModel, signature_from_spec
from services.registry_keys import BOOSTER_ARTIFACT, SPEC_ARTIFACT
from services.scoring import ScoringModel, prediction_frame
from services.spec import load_spec
from tests.models import model_files

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("service", ["fraud-detection", "demand-forecast"])
def test_the_pyfunc_predicts_exactly_as_the_scoring_model(tmp_path: Path, service: str):
    files = model_files(tmp_path, service, trees=20)
    spec = load_spec(service)
    saved = tmp_path / "pyfunc"
    mlflow.pyfunc.save_model(
        saved,
        python_model=ServiceModel(),
        artifacts={name: str(path) for name, path in files.items()},
        signature=signature_from_spec(spec),
        pip_requirements=[],
    )
    frame = generate(spec, 500, seed=7)[spec.feature_names]  # categories, gaps, booleans
    served = mlflow.pyfunc.load_model(str(saved)).predict(frame)
    light = ScoringModel.load(files[BOOSTER_ARTIFACT], files[SPEC_ARTIFACT])
    pd.testing.assert_frame_equal(served, light.predict_frame(frame), check_exact=True)
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")  # as /predict
    from_records = prediction_frame(spec, light.predict_records(records))
    pd.testing.assert_frame_equal(served, from_records, check_exact=True)
