"""Operating-system limits on connections: open files and ephemeral ports.

Checked before a run starts, so that asking for more connections than the machine allows fails
up front with the limits named, instead of halfway through connecting.
"""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass
from pathlib import Path

from bench.errors import UsageError

# Files a process needs besides its connections: interpreter, event loop, pipes, logs.
RESERVED_FILES = 64
# Use at most this share of one source address's ephemeral ports: the kernel searches for a
# free port at each connect(), and the fuller the range the longer it searches (50,000
# connections over 3 processes: set up in 179 s over 2 addresses at 90% of their ports, in
# 53 s over 7 at 30%, docs/measurements.md); TIME_WAITs and other programs hold ports too.
PORT_RANGE_SHARE = 0.3
DEFAULT_PORT_RANGE = (32768, 60999)


def raise_open_files_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit; returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft if hard == resource.RLIM_INFINITY else hard


def hard_open_files_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def port_range(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> tuple[int, int]:
    try:
        low, high = (int(v) for v in path.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_PORT_RANGE
    return low, high


# Linux's default largest send buffer a TCP socket grows to (net.ipv4.tcp_wmem's third value).
DEFAULT_SEND_BUFFER_MAX_BYTES = 4 << 20


def socket_send_buffer_max(path: Path = Path("/proc/sys/net/ipv4/tcp_wmem")) -> int:
    """The largest send buffer the kernel lets a TCP socket grow to (bytes)."""
    try:
        return int(path.read_text().split()[2])
    except (OSError, ValueError, IndexError):
        return DEFAULT_SEND_BUFFER_MAX_BYTES


@dataclass(frozen=True)
class ConnectionBudget:
    per_worker: list[int]
    source_addresses: tuple[str, ...]


# Several server processes: each may get this share more than an even split of connections.
SERVER_SHARE_MARGIN = 0.10


def plan_connections(
    connections: int,
    workers: int,
    worker_files_limit: int,
    server_files_limit: int | None,
    ports: tuple[int, int],
    server_processes: int = 1,
) -> ConnectionBudget:
    """Split connections over workers and loopback source addresses, or refuse (pure).
    ``server_processes``: the server's processes sharing its port; the kernel spreads
    connections over them by a hash, so each is allowed for its share plus
    SERVER_SHARE_MARGIN (at 50,000 over 3 the share's spread is about 100 connections)."""
    per_worker = [
        connections // workers + (1 if i < connections % workers else 0) for i in range(workers)
    ]
    largest = max(per_worker)
    if largest + RESERVED_FILES > worker_files_limit:
        raise UsageError(
            f"{connections:,} connections over {workers} generator process(es) need "
            f"{largest + RESERVED_FILES:,} open files in one process, but the limit is "
            f"{worker_files_limit:,}; use more --workers or fewer --connections"
        )
    share = (
        connections
        if server_processes == 1
        else math.ceil(connections / server_processes * (1 + SERVER_SHARE_MARGIN))
    )
    if server_files_limit is not None and share + RESERVED_FILES > server_files_limit:
        where = (
            "the server process"
            if server_processes == 1
            else (f"each of the server's {server_processes} processes")
        )
        raise UsageError(
            f"{connections:,} connections need {share + RESERVED_FILES:,} open files in "
            f"{where}, but its limit is {server_files_limit:,}"
        )
    usable_ports = int((ports[1] - ports[0] + 1) * PORT_RANGE_SHARE)
    addresses_needed = -(-connections // usable_ports)
    if addresses_needed > 254:
        raise UsageError(f"{connections:,} connections need more loopback addresses than exist")
    addresses = tuple(f"127.0.0.{i}" for i in range(1, addresses_needed + 1))
    return ConnectionBudget(per_worker, addresses if addresses_needed > 1 else ())
