"""Listening sockets of a set of processes, and whether an address is loopback (the tests that
check that nobody gets into a stack read them)."""

from __future__ import annotations

import ipaddress
import socket

import psutil

# Ray Serve 2.60 starts each replica's gRPC server for calls between deployments on `[::]:0`,
# hard-coded (serve/_private/replica.py), behind the token interceptor: the one socket of the
# stack outside loopback (test_stack_security.py shows it refuses callers without the token)
REPLICA_TITLE = "ray::ServeReplica"


def listening_sockets(
    processes: list[psutil.Process], kind: str = "inet"
) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket these processes listen on and, unless `kind`
    is "tcp", every UDP socket they bound."""
    pids = {p.pid for p in processes}
    return [
        (c.pid, c.laddr.ip, c.laddr.port)
        for c in psutil.net_connections(kind=kind)
        if c.pid in pids
        and (c.status == psutil.CONN_LISTEN or (c.type == socket.SOCK_DGRAM and c.laddr))
    ]


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4-mapped loopback (`::ffff:127.0.0.1`); a zone is ignored."""
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or bool(mapped and mapped.is_loopback)
