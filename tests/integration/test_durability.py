"""Nothing answered is lost: the Batch replica killed during a large /batch, and the whole
local stack killed and started again, under load. Every prediction answered with a 2xx and
every label accepted before the kill is in the inference log once (the write-ahead files of
the killed replicas are committed by the replicas that start after them)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import httpx
import psutil
import pytest
from ray.serve.schema import ReplicaState

from mlops import stack
from services.inference_log import REQUEST_ID
from services.settings import get_settings, tool
from serving.deploy import applications, deploy
from serving.manifest import BATCH, manifest_path
from serving.protocol import PREDICTIONS
from tests.figures import record_figure
from tests.load import Background, FeedbackSender, Load, log_completeness, predict_body

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
SERVICE = "fraud-detection"
BATCH_ROWS = 5_000  # 5x a real-time request's limit; a quarter of the rows that start a flush
GCS_OUTAGE_S = 10.0  # well within the raylets' 60 s reconnect timeout


class BatchLoad(Background):
    """POSTs one large body to `/<service>/batch` back to back; keeps the answered row ids."""

    def __init__(self, service: str, rows: int, max_s: float = 120.0) -> None:
        self.url = f"{get_settings().serve_url}/{service}/batch"
        self.body, self.max_s = predict_body(service, rows), max_s
        self.answered: list[str] = []
        self.answers, self.failures = 0, 0
        super().__init__("batch-load")

    def _run(self) -> None:
        started = time.monotonic()
        with httpx.Client(timeout=120) as http:
            while not self._stop.is_set() and time.monotonic() - started < self.max_s:
                try:
                    response = http.post(self.url, json=self.body)
                except httpx.HTTPError:
                    self.failures += 1
                    continue
                if response.status_code == 200:
                    self.answered += [p[REQUEST_ID] for p in response.json()[PREDICTIONS]]
                    self.answers += 1
                else:
                    self.failures += 1


def batch_replica(service: str) -> tuple[str, int] | None:
    """(id, pid) of the service's RUNNING Batch replica, if there is one."""
    for replica in applications()[service].deployments[BATCH].replicas:
        if replica.state == ReplicaState.RUNNING and replica.pid:
            return replica.replica_id, replica.pid
    return None


def wait_for(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_batch_replica_killed_during_a_large_batch_loses_no_answered_row(served):
    item = f"Batch replica killed (SIGKILL) during a {BATCH_ROWS:,}-row /batch"
    with BatchLoad(SERVICE, BATCH_ROWS) as load:
        assert wait_for(lambda: load.answers >= 2, 120), "no /batch was answered"
        victim = batch_replica(SERVICE)
        assert victim is not None
        answers = load.answers
        assert wait_for(lambda: load.answers > answers, 60)  # the next one is now in flight
        os.kill(victim[1], signal.SIGKILL)  # its predecessor's rows were appended just now
        answers_at_kill = load.answers
        replaced = wait_for(lambda: (batch_replica(SERVICE) or victim)[0] != victim[0], 90)
        assert wait_for(lambda: load.answers > answers_at_kill + 1, 90), "/batch never recovered"
    record_figure(item, "batches answered / failed", f"{load.answers} / {load.failures}", "-", True)
    record_figure(item, "Batch replica replaced", replaced, "yes", replaced)
    lost = log_completeness(SERVICE, item, load.answered)
    assert replaced
    assert lost == {"predictions": (0, 0)}, lost


def kill_stack() -> None:
    """SIGKILL every process of the local stack: MLflow's, and Ray's (`ray stop --force`)."""
    settings = get_settings()
    pid_file = settings.home / "mlflow.pid"
    with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
        os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    subprocess.run([tool("ray"), "stop", "--force"], capture_output=True, check=False)


def kill_gcs() -> float:
    """SIGKILL the head's GCS server; the monotonic time of the kill."""
    (gcs,) = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "gcs_server"]
    gcs.kill()
    return time.monotonic()


def test_the_whole_stack_killed_and_started_again_loses_nothing_answered(served):
    """First the head's GCS alone (no GCS fault tolerance here: the cluster is lost once the
    raylets give up on it), then every process of the stack; the stack started again."""
    item = "The whole local stack killed (SIGKILL) under load and started again"
    try:
        with (
            Load(SERVICE, predict_body(SERVICE), rate=100.0, max_s=60) as load,
            FeedbackSender(load) as feedback,
        ):
            time.sleep(4)
            gcs_killed_at = kill_gcs()
            time.sleep(GCS_OUTAGE_S)
            during = [version for t, version in load.outcomes if t >= gcs_killed_at]
            kill_stack()
            time.sleep(1)
    finally:
        started = time.monotonic()
        stack.up()
        deploy(manifest_path())
        restart_s = time.monotonic() - started
    outage = f"Head's GCS killed under load: traffic in the next {GCS_OUTAGE_S:.0f} s"
    failed = sum(version is None for version in during)
    record_figure(outage, "requests", len(during), ">= 500", len(during) >= 500)
    record_figure(outage, "failed requests", failed, "0", failed == 0)
    record_figure(item, "stack up and manifest deployed after (s)", round(restart_s, 1), "-", True)
    lost = log_completeness(SERVICE, item, load.request_ids, feedback.accepted)
    assert len(during) >= 500 and failed == 0, (len(during), failed)  # the data plane serves
    assert lost == {"predictions": (0, 0), "labels": (0, 0)}, lost
