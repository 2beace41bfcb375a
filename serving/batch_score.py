"""`mlops batch-score`: score files too large for HTTP with Ray Data and the serving model code."""

from __future__ import annotations

import logging
from typing import Any

from services.ray_access import use_in_this_process
from services.settings import get_settings
from services.spec import load_spec
from serving.gitops import version_on_main
from serving.scorer import Scorer

log = logging.getLogger(__name__)
BATCH_ROWS = 50_000
# Logical CPU shares, like the serve replicas' 0.25: a whole CPU would wait forever on a
# cluster whose replicas already hold most of its CPUs.
SCORER_CPUS = 0.5
IO_CPUS = 0.25
ACTOR_WAIT_S = 120  # fail with a clear error rather than wait forever for a scorer slot


def production_version(service: str) -> str:
    """The version the manifest on main names (what runs); an alias that disagrees is logged."""
    from services.registry import connect  # MLflow: only when the version is not given

    version, note = version_on_main(connect(), service)
    if version is None:
        raise ValueError(f"{service}: the manifest on main names no version; pass --version")
    if note:
        log.warning("%s: %s; scoring v%s", service, note, version)
    return version


def batch_score(
    service: str,
    input_uri: str,
    output_uri: str,
    version: str | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """Read Parquet/CSV at `input_uri`, write predictions as Parquet to `output_uri` (with the
    version the manifest on main names, unless `version` is given)."""
    import fsspec

    use_in_this_process(get_settings())  # the token, and a local head's loopback address
    import ray

    spec = load_spec(service)  # a known service (the columns come from the scored version)
    filesystem, path = fsspec.core.url_to_fs(input_uri)
    if not filesystem.exists(path):
        raise FileNotFoundError(f"batch-score input not found: {input_uri}")
    version = version or production_version(service)
    connected_here = not ray.is_initialized()
    if connected_here:
        ray.init(address=address, log_to_driver=False)
    try:
        ray.data.DataContext.get_current().wait_for_min_actors_s = ACTOR_WAIT_S
        io_args = {"num_cpus": IO_CPUS}
        reader = ray.data.read_csv if input_uri.endswith(".csv") else ray.data.read_parquet
        reader(input_uri, ray_remote_args=io_args).map_batches(
            Scorer,
            fn_constructor_kwargs={"service": spec.name, "version": version},
            batch_format="pandas",
            batch_size=BATCH_ROWS,
            concurrency=1,
            num_cpus=SCORER_CPUS,
        ).write_parquet(output_uri, ray_remote_args=io_args)
        rows = ray.data.read_parquet(output_uri).count()  # from the files' metadata
    finally:
        if connected_here:  # Ray prints the raylet's warnings even so: none after the result
            ray.shutdown()
    log.info("scored %d rows of %s with v%s into %s", rows, service, version, output_uri)
    return {"service": service, "version": version, "rows": rows, "output": output_uri}
