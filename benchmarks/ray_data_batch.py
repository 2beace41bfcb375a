"""The batch-score job done by Ray Data, for the bench's A/B against `mlops batch-score`:
`python -m benchmarks.ray_data_batch SERVICE VERSION INPUT OUTPUT`, a whole command like it.

`read_parquet`, `map_batches` over an actor pool of the same size and CPU share as the
command's scorers, each calling the same `Scorer.scored` (the spec's checks, the model, the
input's columns, the outputs and the version), then `write_parquet`: the same work per row,
with Ray Data's own reading, block passing and writing around it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from services.ray_access import use_in_this_process
from services.settings import get_settings
from serving.batch_score import SCORER_CPUS, SCORERS
from serving.scorer import BATCH_ROWS, Scorer

if TYPE_CHECKING:
    import pyarrow as pa

IO_CPUS = 0.25  # Ray Data's read and write tasks, a share like the serve replicas'


class ScoredBatches:
    """Ray Data's callable: Arrow batches in, scored Arrow batches out."""

    def __init__(self, service: str, version: str) -> None:
        self.scorer = Scorer(service, version)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.scorer.scored(batch)


def score(service: str, version: str, input_uri: str, output_uri: str) -> int:
    """Score `input_uri` into `output_uri` with Ray Data; the rows written."""
    use_in_this_process(get_settings())
    import ray

    ray.init(address=get_settings().ray_address, log_to_driver=False)
    try:
        io_args = {"num_cpus": IO_CPUS}
        ray.data.read_parquet(input_uri, ray_remote_args=io_args).map_batches(
            ScoredBatches,
            fn_constructor_kwargs={"service": service, "version": version},
            batch_format="pyarrow",
            batch_size=BATCH_ROWS,
            concurrency=SCORERS,
            num_cpus=SCORER_CPUS,
        ).write_parquet(output_uri, ray_remote_args=io_args)
        return ray.data.read_parquet(output_uri).count()
    finally:
        ray.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    service, version, input_uri, output_uri = argv if argv is not None else sys.argv[1:]
    print(score(service, version, input_uri, output_uri))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
