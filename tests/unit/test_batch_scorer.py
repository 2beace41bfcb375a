"""`mlops batch-score` without a cluster: the parts the driver cuts and what a scorer writes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from services.datagen import generate
from services.inference_log import MODEL_VERSION, PREDICTION, PROBABILITY
from services.model_cache import cached_artifacts
from services.settings import MODEL_CACHE_DIR_ENV, TRACKING_URI_ENV
from services.spec import SpecError, load_spec
from serving.batch_score import batch_score, parts
from serving.scorer import Part, Scorer
from tests.models import copying, model_files

pytestmark = pytest.mark.unit
SERVICE = "fraud-detection"


@pytest.fixture
def rows() -> pd.DataFrame:
    spec = load_spec(SERVICE)
    return generate(spec, 300, seed=5)[spec.feature_names]


@pytest.fixture
def scorer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scorer:
    monkeypatch.setenv(MODEL_CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(TRACKING_URI_ENV, "http://127.0.0.1:9")  # a miss would fail
    cached_artifacts(SERVICE, "3", copying(model_files(tmp_path)))
    return Scorer(SERVICE, "3")


def test_parts_are_the_row_groups_of_the_parquet_files_and_the_csv_files_in_name_order(
    tmp_path, rows
):
    source = tmp_path / "in"
    source.mkdir()
    rows.to_parquet(source / "b.parquet", index=False, row_group_size=100)  # 3 row groups
    rows.to_csv(source / "a.csv", index=False)
    (source / "README.md").write_text("not data\n")

    cut = parts(str(source), str(tmp_path / "out"))

    assert [(Path(p.source).name, p.row_group) for p in cut] == [
        ("a.csv", None),
        ("b.parquet", 0),
        ("b.parquet", 1),
        ("b.parquet", 2),
    ]
    assert [Path(p.output).name for p in cut] == [f"part-0000{i}.parquet" for i in range(4)]


def test_parts_name_a_missing_input_and_a_folder_without_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.parquet"):
        parts(str(tmp_path / "absent.parquet"), str(tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no Parquet or CSV file"):
        parts(str(tmp_path / "empty"), str(tmp_path / "out"))


def test_a_scored_part_keeps_its_columns_and_adds_the_outputs_and_the_version(
    tmp_path, rows, scorer
):
    source = tmp_path / "rows.parquet"
    rows.to_parquet(source, index=False)
    part = Part(str(source), 0, str(tmp_path / "part-00000.parquet"))

    assert scorer.score_part(part) == len(rows)

    scored = pd.read_parquet(part.output)
    pd.testing.assert_frame_equal(scored[list(rows.columns)], rows)
    expected = scorer.model.predict_frame(rows)
    assert scored[PROBABILITY].tolist() == pytest.approx(expected[PROBABILITY].tolist())
    assert scored[PREDICTION].tolist() == expected[PREDICTION].tolist()
    assert set(scored[MODEL_VERSION]) == {"3"}


def test_a_csv_part_larger_than_a_batch_is_written_as_one_file(tmp_path, scorer, monkeypatch):
    monkeypatch.setattr("serving.scorer.BATCH_ROWS", 70)  # 300 rows: 5 batches, 1 file
    spec = load_spec(SERVICE)
    frame = generate(spec, 300, seed=6)[spec.feature_names]
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    part = Part(str(source), None, str(tmp_path / "part-00000.parquet"))

    assert scorer.score_part(part) == 300

    written = pq.ParquetFile(part.output)
    assert written.metadata.num_rows == 300 and written.metadata.num_row_groups == 5
    assert pd.read_parquet(part.output)[MODEL_VERSION].tolist() == ["3"] * 300


def test_an_invalid_value_names_the_part_and_its_row_group(tmp_path, rows, scorer):
    bad = rows.copy()
    bad.loc[7, "amount"] = 10**9  # above the spec's max
    source = tmp_path / "rows.parquet"
    bad.to_parquet(source, index=False)
    part = Part(str(source), 0, str(tmp_path / "part-00000.parquet"))

    with pytest.raises(ValueError, match=r"rows\.parquet, row group 0: 1 invalid values.*amount"):
        scorer.score_part(part)


def test_an_existing_output_or_an_unknown_service_is_refused_before_any_work(tmp_path, rows):
    source = tmp_path / "rows.parquet"
    rows.to_parquet(source, index=False)
    (tmp_path / "out").mkdir()

    with pytest.raises(FileExistsError, match="output exists"):
        batch_score(SERVICE, str(source), str(tmp_path / "out"), version="1")
    with pytest.raises(SpecError, match="unknown service 'nope'"):
        batch_score("nope", str(source), str(tmp_path / "new"), version="1")
    assert not (tmp_path / "new").exists()
