"""`mlops batch-score`: score files too large for HTTP on the Ray cluster, with the serving
model code.

The driver lists the input's files and cuts them into parts (a Parquet file's row groups, a
CSV file whole); `scorers` actors (`serving.scorer.Scorer`) each load the version from their
node's model cache and take the parts one after the other (Ray's `ActorPool`), each part
written as one Parquet file of the output folder. The output is all or nothing: a failure
removes the folder the command created.
"""

from __future__ import annotations

import logging
from typing import Any

from services.ray_access import use_in_this_process
from services.settings import get_settings
from services.spec import check_service
from serving.scorer import CSV_SUFFIX, Part, Scorer

log = logging.getLogger(__name__)
#: Scorer actors by default: one per core of a 2-core node (each scores on one thread).
SCORERS = 2
# A logical CPU share, like the serve replicas' 0.25: a whole CPU would wait forever on a
# cluster whose replicas already hold most of its CPUs.
SCORER_CPUS = 0.5
ACTOR_WAIT_S = 120  # fail with a clear error rather than wait forever for a scorer slot
SUFFIXES = (".parquet", CSV_SUFFIX)


def production_version(service: str) -> str:
    """The version the manifest on main names (what runs); an alias that disagrees is logged."""
    from services.registry import connect  # MLflow, git: only when the version is not given
    from serving.gitops import version_on_main

    version, note = version_on_main(connect(), service)
    if version is None:
        raise ValueError(f"{service}: the manifest on main names no version; pass --version")
    if note:
        log.warning("%s: %s; scoring v%s", service, note, version)
    return version


def parts(input_uri: str, output_uri: str) -> list[Part]:
    """The parts of the input (a file, or a folder's Parquet and CSV files, in name order),
    each with its output file."""
    import fsspec
    import pyarrow.parquet as pq

    filesystem, path = fsspec.core.url_to_fs(input_uri)
    if not filesystem.exists(path):
        raise FileNotFoundError(f"batch-score input not found: {input_uri}")
    if filesystem.isdir(path):
        files = [name for name in sorted(filesystem.find(path)) if name.endswith(SUFFIXES)]
    else:
        files = [path]
    if not files:
        raise FileNotFoundError(f"batch-score input holds no Parquet or CSV file: {input_uri}")
    sources: list[tuple[str, int | None]] = []
    for name in files:
        source = filesystem.unstrip_protocol(name)
        if name.endswith(CSV_SUFFIX):
            sources.append((source, None))
        else:
            with filesystem.open(name, "rb") as file:
                groups = pq.ParquetFile(file).metadata.num_row_groups
            sources.extend((source, group) for group in range(groups))
    output = output_uri.rstrip("/")
    return [
        Part(source, group, f"{output}/part-{index:05d}.parquet")
        for index, (source, group) in enumerate(sources)
    ]


def batch_score(
    service: str,
    input_uri: str,
    output_uri: str,
    version: str | None = None,
    address: str | None = None,
    scorers: int = SCORERS,
) -> dict[str, Any]:
    """Score Parquet/CSV at `input_uri` into Parquet files in the new folder `output_uri`, with
    the version the manifest on main names unless `version` is given."""
    import fsspec

    use_in_this_process(get_settings())  # the token, and a local head's loopback address
    import ray

    check_service(service)  # the columns and rules come from the scored version's own spec
    if scorers < 1:
        raise ValueError(f"scorers must be at least 1, not {scorers}")
    work = parts(input_uri, output_uri)
    filesystem, output = fsspec.core.url_to_fs(output_uri)
    if filesystem.exists(output):
        raise FileExistsError(f"batch-score output exists: {output_uri} (name a new folder)")
    version = version or production_version(service)
    connected_here = not ray.is_initialized()
    if connected_here:
        ray.init(address=address, log_to_driver=False)
    actor = ray.remote(Scorer).options(num_cpus=SCORER_CPUS)
    actors = [actor.remote(service, version) for _ in range(min(scorers, len(work)))]
    filesystem.makedirs(output)
    try:
        rows = _score(actors, work)
    except BaseException:
        filesystem.rm(output, recursive=True)
        raise
    finally:
        for scorer in actors:
            ray.kill(scorer)
        if connected_here:  # Ray prints the raylet's warnings even so: none after the result
            ray.shutdown()
    log.info("scored %d rows of %s with v%s into %s", rows, service, version, output_uri)
    return {"service": service, "version": version, "rows": rows, "output": output_uri}


def _score(actors: list[Any], work: list[Part]) -> int:
    """The rows `actors` score from `work`, once all of them are ready; a scorer's error is
    raised as itself (the part it names), not as Ray's wrapper with the worker's traceback."""
    import ray
    from ray.util import ActorPool

    ready, _ = ray.wait(
        [scorer.ready.remote() for scorer in actors],
        num_returns=len(actors),
        timeout=ACTOR_WAIT_S,
    )
    if len(ready) < len(actors):
        raise TimeoutError(
            f"{len(actors) - len(ready)} of {len(actors)} scorers ({SCORER_CPUS} CPU each) "
            f"found no room on the cluster within {ACTOR_WAIT_S} s"
        )
    try:
        ray.get(ready)
        pool = ActorPool(actors)
        return sum(pool.map_unordered(lambda scorer, part: scorer.score_part.remote(part), work))
    except ray.exceptions.RayTaskError as error:
        raise error.cause from None
    except ray.exceptions.RayActorError as error:  # a scorer's process died (killed, memory)
        raise RuntimeError(f"a scorer stopped before the end of the job: {error}") from None
