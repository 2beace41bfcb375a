"""HTTP load with wrk (Debian's package): throughput and latency percentiles of one endpoint."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "r"); wrk.body = f:read("*a"); f:close()
"""


@dataclass(frozen=True)
class LoadResult:
    name: str
    connections: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    cpu_ms_per_request: float = 0.0  # whole machine (server, ingress and wrk) per request


def _busy_cpu_s() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def parse_wrk(name: str, connections: int, output: str) -> LoadResult:
    """Requests/s, p50 and p99 (ms) and non-2xx count from `wrk --latency` output."""

    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not match:
            raise ValueError(f"no {percent}% latency in wrk output:\n{output}")
        return float(match[1]) * UNITS[match[2]]

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not rate:
        raise ValueError(f"no Requests/sec in wrk output:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return LoadResult(
        name,
        connections,
        float(rate[1]),
        latency("50"),
        latency("99"),
        int(errors[1]) if errors else 0,
    )


def run_wrk(name: str, url: str, body: str, connections: int, duration_s: int) -> LoadResult:
    """POST `body` to `url` with `connections` keep-alive connections for `duration_s`."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: `apt-get install wrk` (make bench does it)")
    with tempfile.TemporaryDirectory() as tmp:
        body_file, script = Path(tmp) / "body.json", Path(tmp) / "post.lua"
        body_file.write_text(body)
        script.write_text(LUA.format(body=body_file))
        threads = min(2, connections)
        busy_before = _busy_cpu_s()
        output = subprocess.run(
            [
                wrk,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{duration_s}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        busy_s = _busy_cpu_s() - busy_before
    result = parse_wrk(name, connections, output)
    requests = result.requests_per_s * duration_s
    return replace(result, cpu_ms_per_request=1e3 * busy_s / requests if requests else 0.0)
