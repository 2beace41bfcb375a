"""`mlops stack up|status|down --profile production` on the real servers: every socket on
loopback, `up` idempotent, `down` stopping by pid everything `up` started, data kept across."""

from __future__ import annotations

import json
import time

import psutil
import pytest
from mlflow import MlflowClient

from mlops.processes import alive
from mlops.production.layout import S3, WEED_PORT_FLAGS
from services.settings import TRACKING_URI_ENV
from tests.figures import record_figure
from tests.production import PIDS
from tests.sockets import is_loopback, listening_sockets

pytestmark = pytest.mark.integration
COMPONENTS = ("postgresql", "seaweedfs", "mlflow")


@pytest.mark.reliability
def test_every_socket_of_the_production_profile_listens_on_loopback_only(production):
    item = "Production profile: listening sockets"
    processes = production.processes()
    sockets = {name: listening_sockets(found) for name, found in processes.items()}
    addresses = sorted({ip for found in sockets.values() for _, ip, _ in found})
    outside = [s for found in sockets.values() for s in found if not is_loopback(s[1])]
    record_figure(item, "listening sockets", sum(map(len, sockets.values())), "-", True)
    record_figure(item, "addresses", ", ".join(addresses), "127.0.0.1", not outside)
    for name, found in sockets.items():
        record_figure(item, f"{name} sockets", len(found), ">= 1", bool(found))
    assert not outside, outside
    assert all(sockets.values()), sockets
    # weed mini opens a server per role: each on a port the profile chose, none on a default
    recorded = json.loads(production.layout.ports_file.read_text())
    weed_ports = {recorded[name] for name in (S3, *WEED_PORT_FLAGS)}
    assert {port for _, _, port in sockets["seaweedfs"]} <= weed_ports


def test_up_is_idempotent_status_names_each_component_down_stops_what_up_started(production):
    item = "Production profile: up, status, down"
    before = {name: found[0].pid for name, found in production.processes().items()}
    started = time.monotonic()
    again = production.stack("up")
    again_s = time.monotonic() - started
    after = {name: found[0].pid for name, found in production.processes().items()}
    record_figure(item, "second `up` (s)", round(again_s, 1), "< 15", again_s < 15)
    assert again.returncode == 0, again.stderr
    assert after == before  # no server started twice, none restarted
    shown = production.stack("status")
    table = shown.stdout + shown.stderr  # the CLI's tables go to stderr
    assert shown.returncode == 0, table
    assert all(name in table for name in COMPONENTS), table

    model = "lifecycle-kept"
    with production.as_client() as env:
        client = MlflowClient(env[TRACKING_URI_ENV])
        client.create_registered_model(model)
        servers = [p for found in production.processes().values() for p in found]
        ports = {port for _, _, port in listening_sockets(servers)}
        stopped = production.stack("down")
        left = [p.pid for p in servers if alive(p.pid)]
        still_listening = [c for c in psutil.net_connections("inet") if c.laddr.port in ports]
        pid_files = [name for name in PIDS if production.layout.pid(name).exists()]
        status_down = production.stack("status")
        started = time.monotonic()
        restarted = production.stack("up")
        restart_s = time.monotonic() - started
        kept = client.get_registered_model(model).name == model
    record_figure(item, "processes left after `down`", len(left), "0", not left)
    record_figure(item, "restart after `down` (s)", round(restart_s, 1), "-", True)
    record_figure(item, "registered model kept across down/up", kept, "yes", kept)
    assert stopped.returncode == 0, stopped.stderr
    assert not left
    assert not [c for c in still_listening if c.status == psutil.CONN_LISTEN], still_listening
    assert not pid_files, pid_files
    assert status_down.returncode == 1 and "no" in status_down.stderr
    assert restarted.returncode == 0, restarted.stderr
    assert kept
