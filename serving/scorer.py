"""The actor of `mlops batch-score`: one version's model per Ray worker, parts of the input in,
Parquet files of predictions out.

A module of its own: Ray pickles the class by reference, so a worker imports this module and
what scoring needs (the model from the node's cache), not the driver's MLflow and git code. The
driver only pickles the class and the parts: it imports neither XGBoost nor pandas (their
imports are in the methods the workers run), to keep the command's start short.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from services.scoring import ScoringModel
    from services.spec import ServiceSpec

#: Rows scored per call: large enough for XGBoost's per-call cost to vanish, small enough to
#: keep a scorer's memory flat whatever the size of the part.
BATCH_ROWS = 50_000
CSV_SUFFIX = ".csv"


@dataclass(frozen=True)
class Part:
    """A unit of work: one row group of a Parquet file, or a whole CSV file (`row_group` None),
    scored into one Parquet file at `output`."""

    source: str
    row_group: int | None
    output: str

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The part's rows, `BATCH_ROWS` at a time."""
        import fsspec
        import pyarrow.csv
        import pyarrow.parquet as pq

        with fsspec.open(self.source, "rb") as file:
            if self.row_group is None:
                yield from pyarrow.csv.read_csv(file).to_batches(BATCH_ROWS)
            else:
                parquet = pq.ParquetFile(file)
                yield from parquet.iter_batches(BATCH_ROWS, row_groups=[self.row_group])

    def describe(self) -> str:
        """How an error names the part."""
        group = "" if self.row_group is None else f", row group {self.row_group}"
        return f"{self.source}{group}"


class Scorer:
    """Scores parts of an input with version `version` of `service`, checked against the
    version's own spec."""

    def __init__(self, service: str, version: str) -> None:
        self.service = service
        self.version = version

    @functools.cached_property
    def model(self) -> ScoringModel:
        """The version's model, from the node's cache (XGBoost comes along: on workers only)."""
        from services.model_cache import load_cached

        return load_cached(self.service, self.version)

    @property
    def spec(self) -> ServiceSpec:
        """The scored version's own features and rules."""
        return self.model.spec

    def ready(self) -> str:
        """Load the model. The driver waits on this call, bounded in time; a version that cannot
        be loaded fails it with its own error (a constructor's would come back as a dead actor)."""
        return self.model.spec.name

    def outputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The predictions of the rows of `frame`, once its features pass the spec's checks."""
        from services.schema import validate_features

        features = frame.reindex(columns=self.spec.feature_names)
        problems = validate_features(self.spec, features)
        if problems:
            raise ValueError(f"{len(problems)} invalid values, first: {problems[0]}")
        return self.model.predict_frame(features)

    def score_part(self, part: Part) -> int:
        """Score `part` into its output file (none for a part without rows); the rows scored."""
        import fsspec
        import pyarrow.parquet as pq

        filesystem, path = fsspec.core.url_to_fs(part.output)
        rows = 0
        writer: pq.ParquetWriter | None = None
        try:
            for batch in part.batches():
                try:
                    table = self.scored(batch)
                except ValueError as error:
                    raise ValueError(f"{part.describe()}: {error}") from None
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema, filesystem=filesystem)
                elif not table.schema.equals(writer.schema):  # a batch's column of nulls only
                    table = table.cast(writer.schema)
                writer.write_table(table)
                rows += table.num_rows
        finally:
            if writer is not None:
                writer.close()
        return rows

    def scored(self, batch: pa.RecordBatch | pa.Table) -> pa.Table:
        """The batch's own columns (kept in Arrow), its outputs and the version."""
        import pyarrow as pa

        from services.inference_log import MODEL_VERSION, with_columns

        table = pa.table(batch)
        outputs = self.outputs(table.to_pandas())
        columns = {name: outputs[name].to_numpy() for name in outputs.columns}
        return with_columns(table, columns | {MODEL_VERSION: self.version})
