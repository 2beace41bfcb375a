"""Where a Realtime replica's time goes under load: py-spy samples the holder of Python's GIL in
every Realtime replica of the service while wrk drives the real-time load through the ingress.

A replica runs its requests on one Python thread, so the time it holds the GIL bounds its
requests/s. Each sample is charged to the layer of its innermost frame outside Python's standard
library: time in the standard library (asyncio's tasks, json, logging) belongs to whoever called
it, and a C extension's time (httptools, pydantic-core, ONNX Runtime) to the Python frame that
called it.
"""

from __future__ import annotations

import logging
import subprocess
import sysconfig
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from benchmarks.ab import Load, running_replicas
from benchmarks.servers import BIN

log = logging.getLogger(__name__)
RATE_HZ = 100  # py-spy samples per second and replica
STDLIB = sysconfig.get_paths()["stdlib"] + "/"
SITE_PACKAGES = "/site-packages/"
VALIDATION = "validation (pydantic)"
MODEL_RUNTIME = "model runtime (ONNX Runtime, XGBoost, NumPy)"
LOG_WRITES = "inference log's Arrow writes (PyArrow)"
PROJECT = "this project's request path (serving/, services/)"
OTHER = "other libraries"
STANDARD_LIBRARY = "standard library alone (the event loop, mostly)"
# site-packages prefixes of each layer, first match wins; files outside site-packages and the
# standard library are this project's
LAYERS = (
    ("HTTP server (uvicorn, httptools)", ("uvicorn/", "httptools/", "h11/", "uvloop/")),
    ("FastAPI and Starlette (routing, request and response objects)", ("fastapi/", "starlette/")),
    ("Ray Serve (replica wrapper, request context, metrics)", ("ray/serve/",)),
    ("Ray core", ("ray/",)),
    (VALIDATION, ("pydantic/", "pydantic_core/")),
    (MODEL_RUNTIME, ("onnxruntime/", "xgboost/", "numpy/")),
    (LOG_WRITES, ("pyarrow/",)),
)
# the layers that do the request's own work; the others are what serves it
OWN_WORK = (PROJECT, VALIDATION, MODEL_RUNTIME, LOG_WRITES)


def layer_of(path: str) -> str:
    """The layer of a frame's file; `STANDARD_LIBRARY` for Python's own modules, generated code
    (a dataclass's `__init__`) and frames the sampler could not read, whose time belongs to
    their caller."""
    if SITE_PACKAGES in path:
        package = path.split(SITE_PACKAGES, 1)[1]
        return next(
            (name for name, prefixes in LAYERS if package.startswith(prefixes)),
            OTHER,
        )
    if path.startswith(STDLIB) or not path.startswith("/"):  # also "<string>", unreadable
        return STANDARD_LIBRARY
    return PROJECT


def frame_path(frame: str) -> str:
    """The file of a py-spy frame `function (path:line)`."""
    location = frame.rsplit(" (", 1)[-1].rstrip(")")
    return location.rsplit(":", 1)[0]


def sample_layer(stack: list[str]) -> str:
    """The layer of the innermost frame outside the standard library."""
    for frame in reversed(stack):
        if (layer := layer_of(frame_path(frame))) != STANDARD_LIBRARY:
            return layer
    return STANDARD_LIBRARY


def layer_samples(raw_lines: Iterable[str]) -> Counter[str]:
    """Samples per layer from py-spy's raw (collapsed) output: `frame;frame;... count`."""
    samples: Counter[str] = Counter()
    for line in raw_lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            samples[sample_layer(stack.split(";"))] += int(count)
    return samples


def realtime_replica_pids(service: str) -> list[int]:
    return [r.pid for r in running_replicas(service) if r.pid]


def profile(load: Load, service: str) -> dict[str, int]:
    """Samples per layer during one run of `load` (after its warm-up), from every Realtime
    replica of `service`."""
    load.run("warm-up", load.warmup_s)
    pids = realtime_replica_pids(service)
    with tempfile.TemporaryDirectory(prefix="replica-profile-") as tmp:
        outputs = [Path(tmp) / f"{pid}.txt" for pid in pids]
        samplers = [
            subprocess.Popen(
                [
                    *(str(BIN / "py-spy"), "record", "--pid", str(pid), "--gil", "--nonblocking"),
                    *("--rate", str(RATE_HZ), "--duration", str(load.duration_s)),
                    *("--format", "raw", "--full-filenames", "--output", str(output)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, output in zip(pids, outputs, strict=True)
        ]
        load.run("profiled", load.duration_s)
        for sampler in samplers:
            sampler.wait(timeout=60)
        samples: Counter[str] = Counter()
        for output in outputs:
            samples += layer_samples(output.read_text().splitlines())
    log.info("profiled %d replicas: %s", len(pids), dict(samples))
    return dict(samples)


def report_lines(samples: dict[str, int] | None) -> list[str]:
    """A table of the replicas' GIL time by layer (absent from results of older runs)."""
    if not samples:
        return []
    total = sum(samples.values())
    own = sum(samples.get(name, 0) for name in OWN_WORK) / total
    return [
        "",
        "## Where a replica's time goes (16 connections)",
        "",
        "| layer | share of the GIL's held time |",
        "| --- | --- |",
        *(
            f"| {name} | {count / total:.1%} |"
            for name, count in sorted(samples.items(), key=lambda item: -item[1])
        ),
        "",
        f"A Realtime replica runs its requests on one Python thread, so the time it holds "
        f"Python's GIL bounds its requests/s. py-spy sampled the GIL's holder in every Realtime "
        f"replica at {RATE_HZ} Hz during one measured run ({total:,} samples); each sample is "
        "charged to the layer of its innermost frame outside Python's standard library (a C "
        "extension's time to the frame that called it; time in the standard library alone is "
        "mostly the event loop's). The request's own work (validation, encoding, the model, "
        f"the answer and its inference-log rows) holds {own:.0%} of it; the rest is the HTTP "
        "server, the web framework and Ray Serve around it. The sampler's own reads slow the "
        "replicas during this run, so it gives shares, not times.",
    ]
