"""Helpers for tests that change the cluster while it serves traffic: a bounded HTTP client,
the Realtime replicas Ray reports, and deploys with a fixed replica count."""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Self

import httpx
from ray.serve.schema import ReplicaDetails, ReplicaState

from mlops.sandbox import manifest_copy
from services.datagen import generate
from services.inference_log import (
    FEEDBACK_KIND,
    LABEL,
    MODEL_VERSION,
    PREDICTIONS_KIND,
    REQUEST_ID,
    Kind,
    read_log,
)
from services.registry import PRODUCTION, aliased_number, connect
from services.schema import frame_to_records
from services.settings import get_settings
from services.spec import load_spec
from serving.deploy import app_health, applications, deploy
from serving.manifest import REALTIME, hold_replicas, manifest_path
from serving.protocol import PREDICTIONS, RECORDS
from tests.figures import record_figure


def predict_body(service: str, rows: int = 1, seed: int = 3) -> dict[str, Any]:
    """A valid `/predict` body of `rows` generated records."""
    spec = load_spec(service)
    return {RECORDS: frame_to_records(spec, generate(spec, rows, seed)[spec.feature_names])}


def served_state(service: str) -> tuple[str, str | None, str]:
    """Manifest text, the version holding `production`, the version the endpoint serves."""
    return (
        manifest_path().read_text(),
        aliased_number(connect(), service, PRODUCTION),
        str(app_health(service)[MODEL_VERSION]),
    )


def realtime_replicas(service: str) -> list[ReplicaDetails]:
    """Live replicas (id, pid, state...) of the service's Realtime deployment (Serve REST API)."""
    return applications()[service].deployments[REALTIME].replicas


def wait_for_replicas(
    service: str, count: int | None, timeout_s: float, gone: frozenset[str] = frozenset()
) -> float:
    """Seconds until none of the replicas is in `gone` and (unless `count` is None) `count`
    replicas are all RUNNING; raises TimeoutError after `timeout_s`."""
    started = time.monotonic()
    replicas: list[ReplicaDetails] = []
    while time.monotonic() - started < timeout_s:
        replicas = realtime_replicas(service)
        ids = {r.replica_id for r in replicas}
        running = all(r.state == ReplicaState.RUNNING for r in replicas) and len(replicas) == count
        if not ids & gone and (count is None or running):
            return time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError(f"{count} {REALTIME} replicas without {set(gone)} not reached: {replicas}")


def deploy_with_replicas(service: str, directory: Path, count: int) -> None:
    """Deploy a copy of the manifest whose Realtime deployment has exactly `count` replicas."""
    edit = functools.partial(hold_replicas, count)
    deploy(manifest_copy(directory / "replicas.yaml", service, edit))
    wait_for_replicas(service, count, 120)


def restore_manifest(service: str, directory: Path) -> None:
    """Back to one replica (a graceful removal), then the manifest as committed."""
    deploy_with_replicas(service, directory, 1)
    deploy(manifest_path())


class Background:
    """A daemon thread running `_run` while the `with` block lasts (`_stop` ends it)."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class Load(Background):
    """POSTs one body to `/<service>/predict` from one thread until stopped.

    `rate` paces the requests (per second; None: back to back). The client also stops by
    itself after `max_requests` or `max_s`, so a test that fails midway cannot leave it
    running. Each answer is kept in order: `outcomes` holds (monotonic time, model version
    or None), `failures` the status code or exception of every request that was not a 200.
    """

    def __init__(
        self,
        service: str,
        body: dict[str, Any],
        rate: float | None = None,
        max_requests: int = 100_000,
        max_s: float = 120.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.service, self.body, self.rate = service, body, rate
        self.max_requests, self.max_s, self.timeout_s = max_requests, max_s, timeout_s
        self.versions: Counter[str] = Counter()
        self.failures: list[int | str] = []
        self.outcomes: list[tuple[float, str | None]] = []
        self.request_ids: list[str] = []
        super().__init__("load")

    @property
    def sent(self) -> int:
        return len(self.outcomes)

    @property
    def failure_share(self) -> float:
        return len(self.failures) / max(self.sent, 1)

    def version_sequence(self) -> list[str]:
        """Served versions in answer order, consecutive repeats collapsed."""
        sequence: list[str] = []
        for _, version in self.outcomes:
            if version is not None and (not sequence or sequence[-1] != version):
                sequence.append(version)
        return sequence

    def _send(self, http: httpx.Client, url: str) -> None:
        version: str | None = None
        try:
            response = http.post(url, json=self.body)
            if response.status_code == 200:
                answer = response.json()
                version = answer[MODEL_VERSION]
                self.versions[version] += 1
                self.request_ids.extend(p[REQUEST_ID] for p in answer[PREDICTIONS])
            else:
                self.failures.append(response.status_code)
        except httpx.HTTPError as exc:
            self.failures.append(repr(exc))
        self.outcomes.append((time.monotonic(), version))

    def _run(self) -> None:
        url = f"{get_settings().serve_url}/{self.service}/predict"
        interval = 1.0 / self.rate if self.rate else 0.0
        started = next_at = time.monotonic()
        with httpx.Client(timeout=self.timeout_s) as http:
            for _ in range(self.max_requests):
                now = time.monotonic()
                if self._stop.is_set() or now - started > self.max_s:
                    return
                if next_at > now:
                    time.sleep(next_at - now)
                next_at = max(next_at + interval, time.monotonic() - interval)
                self._send(http, url)


class FeedbackSender(Background):
    """Sends a label for each prediction the load got back, from its own thread."""

    def __init__(self, load: Load, rate: float = 20.0) -> None:
        self.load, self.interval = load, 1.0 / rate
        self.service = load.service
        self.accepted: list[str] = []
        self.failures: list[int | str] = []
        super().__init__("feedback")

    def _run(self) -> None:
        url = f"{get_settings().serve_url}/{self.service}/feedback"
        with httpx.Client(timeout=10) as http:
            sent = 0
            while not self._stop.wait(self.interval):
                if sent >= len(self.load.request_ids):
                    continue
                rid = self.load.request_ids[sent]
                sent += 1
                try:
                    response = http.post(url, json={REQUEST_ID: rid, LABEL: sent % 2})
                    if response.status_code == 202:
                        self.accepted.append(rid)
                    else:
                        self.failures.append(response.status_code)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))


def logged_ids(service: str, kind: Kind, wanted: list[str], timeout_s: float = 20.0) -> list[str]:
    """Request ids of `wanted` found in the log, with repeats (waits until each is there, for
    the writers' periodic flush or a recovery, at most `timeout_s`)."""
    deadline, found = time.monotonic() + timeout_s, []
    uri, wanted_set = get_settings().inference_log_uri, set(wanted)
    while time.monotonic() < deadline:
        frame = read_log(uri, service, kind, columns=[REQUEST_ID])
        found = [rid for rid in frame[REQUEST_ID] if rid in wanted_set]
        if set(found) == wanted_set:
            return found
        time.sleep(1.0)
    return found


def log_completeness(
    service: str, item: str, answered: list[str], accepted: list[str] | None = None
) -> dict[str, tuple[int, int]]:
    """(missing, repeated) of the answered prediction rows and the accepted labels in the
    service's log, each recorded as a figure of `item` (waits up to 90 s for a recovery)."""
    wanted = {"predictions": (PREDICTIONS_KIND, answered)}
    if accepted is not None:
        wanted["labels"] = (FEEDBACK_KIND, accepted)
    found = {}
    for what, (kind, ids) in wanted.items():
        missing, repeated = missing_and_repeated(ids, logged_ids(service, kind, ids, 90))
        record_figure(item, f"{what} acknowledged (2xx)", len(ids), "> 0", bool(ids))
        record_figure(item, f"{what} missing from the log", missing, "0", missing == 0)
        record_figure(item, f"{what} logged more than once", repeated, "0", repeated == 0)
        found[what] = (missing, repeated)
    return found


def missing_and_repeated(wanted: list[str], logged: list[str]) -> tuple[int, int]:
    """How many of `wanted` the log lacks, and how many rows it holds more than once."""
    counts = Counter(logged)
    return len(set(wanted) - set(counts)), sum(n - 1 for n in counts.values() if n > 1)
