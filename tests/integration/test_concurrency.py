"""Things started at the same time: registrations of one model, `mlops promote` of one service.

Registrations run in separate processes released together once all of them have imported
the pipeline; promotions are two `mlops promote` processes started together.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from services.inference_log import MODEL_VERSION
from services.registry import PREVIOUS, PRODUCTION, aliased_number
from services.settings import get_settings, tool
from serving.deploy import app_health
from serving.manifest import manifest_path, versions
from serving.promote import promote
from tests.figures import record_figure

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
SERVICE = "fraud-detection"
REGISTRATIONS = 4
REGISTER = (
    "import json, sys\n"
    "from services.spec import load_spec\n"
    "from training.register import register\n"
    "spec = load_spec(sys.argv[1])\n"
    "print('ready', flush=True)\n"
    "sys.stdin.readline()\n"
    "print(json.dumps(register(spec)), flush=True)\n"
)


def registered_versions(client: MlflowClient) -> set[int]:
    return {int(v.version) for v in client.search_model_versions(f"name = '{SERVICE}'")}


@pytest.fixture(scope="module")
def parallel_versions(served, repo: Path) -> dict[str, object]:
    """Versions registered by REGISTRATIONS processes at once, and the versions before."""
    client = MlflowClient(get_settings().tracking_uri)
    before = registered_versions(client)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", REGISTER, SERVICE],
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(REGISTRATIONS)
    ]
    for worker in workers:  # every process has imported everything: release them together
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    started = time.monotonic()
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    results = [worker.communicate(timeout=300) for worker in workers]
    seconds = time.monotonic() - started
    assert all(w.returncode == 0 for w in workers), results
    returned = [json.loads(out.strip().splitlines()[-1])["version"] for out, _ in results]
    return {"before": before, "returned": returned, "seconds": seconds}


def test_parallel_registrations_get_unique_consecutive_versions(parallel_versions):
    item = f"{REGISTRATIONS} registrations of one model at once"
    returned = sorted(int(v) for v in parallel_versions["returned"])
    newest = max(parallel_versions["before"])
    expected = list(range(newest + 1, newest + 1 + REGISTRATIONS))
    after = registered_versions(MlflowClient(get_settings().tracking_uri))
    duplicates = len(returned) - len(set(returned))
    record_figure(
        item,
        "versions returned",
        ", ".join(map(str, returned)),
        ", ".join(map(str, expected)),
        returned == expected,
    )
    record_figure(item, "duplicate versions", duplicates, "0", duplicates == 0)
    record_figure(item, "wall time (s)", round(float(parallel_versions["seconds"]), 1), "-", True)
    assert returned == expected
    assert after == parallel_versions["before"] | set(expected)


def test_concurrent_promotions_are_serialised_and_end_in_agreement(served, parallel_versions):
    item = "Two `mlops promote` of one service at once"
    first, second = parallel_versions["returned"][:2]
    client = MlflowClient(get_settings().tracking_uri)
    try:
        started = time.monotonic()
        runs = [
            subprocess.Popen(
                [tool("mlops"), "promote", f"{SERVICE}@v{version}", "--direct"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for version in (first, second)
        ]
        outputs = [run.communicate(timeout=600) for run in runs]
        seconds = time.monotonic() - started
        codes = [run.returncode for run in runs]
        manifest = versions(manifest_path())[SERVICE]
        production = aliased_number(client, SERVICE, PRODUCTION)
        previous = aliased_number(client, SERVICE, PREVIOUS)
        answered = {app_health(SERVICE)[MODEL_VERSION] for _ in range(10)}
    finally:
        promote(f"{SERVICE}@v{served[SERVICE]}")
    agree = {manifest, production} == answered and len(answered) == 1
    # serialised: the later promotion saw the earlier one's version in `production`
    serialised = {production, previous} == {first, second}
    record_figure(item, "exit codes", ", ".join(map(str, codes)), "0, 0", codes == [0, 0])
    record_figure(
        item,
        "manifest / alias / served",
        f"v{manifest} / v{production} / " + "/".join(f"v{v}" for v in sorted(answered)),
        "one version",
        agree,
    )
    record_figure(
        item,
        "alias previous = the other promotion",
        f"v{previous}",
        f"v{first} or v{second}, not production",
        serialised,
    )
    record_figure(item, "wall time of both (s)", round(seconds, 1), "-", True)
    assert codes == [0, 0], outputs
    assert agree, (manifest, production, answered)
    assert serialised, (production, previous)
