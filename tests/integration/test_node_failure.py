"""A Ray cluster of several nodes on this machine (the production profile's head and two worker
nodes): replicas spread over the nodes, and a whole worker node killed under constant load."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator

import psutil
import pytest

from mlops import ray_nodes
from mlops.processes import wait_until
from mlops.production import profile as production
from mlops.ray_nodes import WorkerNode
from services.settings import get_settings
from serving.deploy import app_health
from tests.figures import record_figure
from tests.load import (
    FeedbackSender,
    Load,
    deploy_with_replicas,
    log_completeness,
    predict_body,
    realtime_replicas,
    restore_manifest,
    wait_for_replicas,
)
from tests.sockets import REPLICA_TITLE, is_loopback, listening_sockets

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
SERVICE = "fraud-detection"
WORKER_NODES = 2
REPLICAS = 4
RATE = 100.0  # requests per second, one record each
MAX_FAILURE_SHARE = 0.01
# Ray's GCS marks a killed node dead after its missed health checks (Ray's defaults: one every
# 3 s, dead after 5 misses), which may come after Serve has re-placed the node's replicas
NODE_DEATH_S = 60


def node_of(pid: int, nodes: list[WorkerNode]) -> WorkerNode | None:
    """The worker node a process belongs to (None: the head)."""
    return next((node for node in nodes if pid in {p.pid for p in node.processes()}), None)


@pytest.fixture(scope="module")
def spread(served, ray_cluster, tmp_path_factory) -> Iterator[list[WorkerNode]]:
    """The production profile's Ray cluster (the session's head and two worker nodes) and the
    service's Realtime deployment on REPLICAS replicas; afterwards one replica again, the
    worker nodes stopped and the replicas they held replaced on the head."""
    settings = get_settings()
    assert settings.ray_worker_nodes == WORKER_NODES  # the profile's default
    directory = tmp_path_factory.mktemp("spread")
    cluster = production.ray_cluster_up()
    assert [c.name for c in cluster if c.healthy] == ["ray", "metrics", "ray worker nodes"]
    nodes = ray_nodes.worker_nodes(settings)
    try:
        deploy_with_replicas(SERVICE, directory, REPLICAS)
        yield nodes
    finally:
        restore_manifest(SERVICE, directory)
        replicas = realtime_replicas(SERVICE)
        on_workers = frozenset(r.replica_id for r in replicas if node_of(r.pid, nodes))
        ray_nodes.down(settings)
        wait_for_replicas(SERVICE, 1, 120, gone=on_workers)
        assert app_health(SERVICE)["ready"]


def test_worker_nodes_join_on_loopback_and_hold_replicas(spread):
    assert ray_nodes.alive_node_count(get_settings()) == 1 + WORKER_NODES
    for node in spread:
        processes = node.processes()
        assert any(p.name() == "raylet" for p in processes), processes
        exposed = [
            (pid, ip, port)
            for pid, ip, port in listening_sockets(processes, "tcp")
            if not is_loopback(ip) and REPLICA_TITLE not in " ".join(psutil.Process(pid).cmdline())
        ]
        assert exposed == [], exposed
    placed = {node_of(r.pid, spread) for r in realtime_replicas(SERVICE)}
    assert len(placed) >= 2 and placed - {None}, placed  # spread, some on worker nodes
    with Load(SERVICE, predict_body(SERVICE), max_requests=200, max_s=60) as load:
        deadline = time.monotonic() + 60
        while load.sent < 200 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert load.sent == 200 and not load.failures, load.failures[:10]


def test_a_killed_worker_node_loses_only_requests_in_flight(spread):
    item = "Ray worker node killed (every process, SIGKILL) under constant load"
    replicas = realtime_replicas(SERVICE)
    by_node = {node: [r for r in replicas if node_of(r.pid, [node])] for node in spread}
    victim, lost = max(by_node.items(), key=lambda item: len(item[1]))
    assert lost, f"no replica on a worker node: {replicas}"
    gone = frozenset(r.replica_id for r in lost)
    with (
        Load(SERVICE, predict_body(SERVICE), rate=RATE, max_s=90) as load,
        FeedbackSender(load) as feedback,
    ):
        time.sleep(3)
        victim.kill()
        killed_at = time.monotonic()
        try:
            noticed_s = wait_for_replicas(SERVICE, None, 60, gone=gone)
            recovery_s = noticed_s + wait_for_replicas(SERVICE, REPLICAS, 60, gone=gone)
        except TimeoutError:
            noticed_s = recovery_s = float("inf")
        time.sleep(3)
    with contextlib.suppress(TimeoutError):  # the count is asserted below
        wait_until(
            lambda: ray_nodes.alive_node_count(get_settings()) == WORKER_NODES,
            "the killed node's death",
            NODE_DEATH_S,
        )
    nodes_after = ray_nodes.alive_node_count(get_settings())
    failed_after = [t - killed_at for t, version in load.outcomes if version is None]
    share = load.failure_share
    record_figure(
        item, "replicas before / on the killed node", f"{REPLICAS} / {len(lost)}", "-", True
    )
    record_figure(item, "requests in the window", load.sent, ">= 1,000", load.sent >= 1_000)
    record_figure(item, "failed requests", len(load.failures), "-", True)
    record_figure(item, "failure share", f"{share:.2%}", "<= 1%", share <= MAX_FAILURE_SHARE)
    last = max(failed_after, default=0.0)
    record_figure(item, "last failed request after the kill (s)", round(last, 1), "-", True)
    record_figure(item, "lost replicas noticed after (s)", round(noticed_s, 1), "-", True)
    record_figure(
        item, f"back to {REPLICAS} RUNNING replicas after (s)", round(recovery_s, 1), "-", True
    )
    record_figure(
        item, "Ray nodes alive after (head + workers)", nodes_after, "2", nodes_after == 2
    )
    # the killed node's write-ahead files are committed by a replica on another node
    missing = log_completeness(SERVICE, item, load.request_ids, feedback.accepted)
    assert load.sent >= 1_000, load.sent
    assert share <= MAX_FAILURE_SHARE, (share, load.failures[:10])
    assert math.isfinite(recovery_s), (
        f"the lost replicas were not re-placed: {realtime_replicas(SERVICE)}"
    )
    assert nodes_after == WORKER_NODES  # the head and the surviving worker node
    assert missing == {"predictions": (0, 0), "labels": (0, 0)}, missing
