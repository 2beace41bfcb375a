"""Worker nodes of the local Ray cluster: more raylets on this machine, joined to the local head.

Each worker node is a whole Ray node (its raylet, object store, agents and workers, own ports)
on 127.0.0.1, started by `ray start --address` in a process group of its own: the group is
recorded under <MLOPS_HOME>/ray/nodes/, and stopping (or killing) the node signals the group.
Serve spreads replicas over the nodes; the ingress stays on the head (`proxy_location:
HeadOnly` in the manifest: on one machine every node has the same address).

Ray keeps a loopback node address only when `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (see
services.ray_access), and with that setting `ray start` refuses to join a cluster. A worker
node is therefore started through this module as a program: it runs Ray's own `ray start` with
Ray's rule that replaces a loopback address by the machine's switched off, and passes the
loopback setting on to every process the node starts. Its servers bind 127.0.0.1 as the head's.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from mlops.processes import wait_until
from mlops.sandbox import server_port
from mlops.stack import LOCAL_NODE_IP, haproxy_env
from services.ray_access import LOOPBACK_ENV, client_env, use_in_this_process
from services.settings import Settings, tool
from serving.k8s import SERVING_ENV

NODE_LOGICAL_CPUS = 2  # Serve replicas ask 0.25 each; real use is bounded by nthread=1
NODE_OBJECT_STORE_BYTES = 512 * 1024**2  # shared memory is per node: Ray's default is 30% of RAM


@dataclass(frozen=True)
class WorkerNode:
    index: int
    process_group: int  # the raylet, its agents and workers, the node's log monitor

    def processes(self) -> list[psutil.Process]:
        """The node's processes still running: its group and their descendants (Ray's
        workers, replicas among them, each lead a process group of their own)."""
        leaders = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getpgid(process.pid) == self.process_group:
                    leaders.append(process)
        found = {}
        for process in leaders:
            with contextlib.suppress(psutil.Error):
                for member in [process, *process.children(recursive=True)]:
                    if member.status() != psutil.STATUS_ZOMBIE:
                        found[member.pid] = member
        return list(found.values())

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """`sig` to every process of the node at once (a node lost as a machine is)."""
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                process.send_signal(sig)


def nodes_dir(settings: Settings) -> Path:
    return settings.home / "ray" / "nodes"


def worker_nodes(settings: Settings) -> list[WorkerNode]:
    """The worker nodes started from this MLOPS_HOME that still have a process."""
    found = []
    for record in sorted(nodes_dir(settings).glob("*.pgid")):
        node = WorkerNode(int(record.stem), int(record.read_text()))
        if node.processes():
            found.append(node)
        else:
            record.unlink(missing_ok=True)
    return found


def alive_node_count(settings: Settings) -> int:
    """Nodes (head included) the cluster's GCS reports ALIVE."""
    use_in_this_process(settings)  # the state API's client reads the token from there
    from ray.util.state import list_nodes

    alive = [("state", "=", "ALIVE")]  # the dead stay listed (and counted as missing) a while
    nodes = list_nodes(address=settings.dashboard_url, filters=alive, raise_on_missing_output=False)
    return len(nodes)


def start(settings: Settings, index: int) -> WorkerNode:
    """`ray start --address=<head>` for one more node, in a process group of its own."""
    metrics_port = server_port()
    agent_port = server_port(taken=(metrics_port,))
    command = [
        sys.executable,
        "-m",
        __name__,
        "start",
        f"--address={settings.ray_address}",
        f"--node-ip-address={LOCAL_NODE_IP}",
        f"--num-cpus={NODE_LOGICAL_CPUS}",
        f"--object-store-memory={NODE_OBJECT_STORE_BYTES}",
        f"--metrics-export-port={metrics_port}",
        f"--dashboard-agent-listen-port={agent_port}",
        "--disable-usage-stats",
    ]
    serving = SERVING_ENV | haproxy_env()  # as the head's processes: same replica settings
    env = os.environ | serving | client_env(settings) | {"RAY_USAGE_STATS_ENABLED": "0"}
    env.pop(LOOPBACK_ENV, None)  # `ray start` would refuse to join; this program passes it on
    started = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output, _ = started.communicate()
    if started.returncode != 0:
        reason = output.strip().splitlines() or ["no output"]
        raise RuntimeError(f"worker node {index}: `ray start` failed: {reason[-1]}")
    record = nodes_dir(settings) / f"{index}.pgid"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(str(started.pid))
    return WorkerNode(index, started.pid)


def up(settings: Settings, count: int, timeout_s: float = 120.0) -> list[WorkerNode]:
    """Start worker nodes until `count` run (the head must be up); wait until the GCS has
    them all ALIVE."""
    running = worker_nodes(settings)
    free = (i for i in itertools.count(1) if i not in {node.index for node in running})
    for index in list(itertools.islice(free, max(count - len(running), 0))):
        running.append(start(settings, index))
    expected = 1 + len(running)
    wait_until(
        lambda: alive_node_count(settings) >= expected, f"{count} Ray worker nodes", timeout_s
    )
    return running


def down(settings: Settings, timeout_s: float = 30.0) -> None:
    """Stop every recorded worker node: SIGTERM to all their processes, SIGKILL to those
    left after `timeout_s`."""
    nodes = worker_nodes(settings)
    for node in nodes:
        node.kill(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(node.processes() for node in nodes) and time.monotonic() < deadline:
        time.sleep(0.2)
    for node in nodes:
        node.kill(signal.SIGKILL)
        (nodes_dir(settings) / f"{node.index}.pgid").unlink(missing_ok=True)


def _ray_start_keeping_loopback() -> None:
    """Ray's `ray start` CLI, with the node's loopback address kept (see the module docstring)."""
    from ray._private import services
    from ray.scripts.scripts import main

    services.resolve_ip_for_localhost = lambda host: host
    os.environ[LOOPBACK_ENV] = "0"  # for the raylet, its agents and workers
    sys.argv = [tool("ray"), *sys.argv[1:]]
    main()


if __name__ == "__main__":
    _ray_start_keeping_loopback()
