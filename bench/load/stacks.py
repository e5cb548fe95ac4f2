"""Which client stack runs a cell: the worker entry the coordinator starts, and the ``client``
label its rows carry. One function decides both, so a row cannot say one client and have been
measured by another (pure: names only).

- ``fast``: the generator's own clients (picows WebSocket, its HTTP/1.1 long-polling client);
- ``library``: websockets' and python-socketio's stock clients.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import modes

FAST = "fast"
LIBRARY = "library"
CLIENTS = (FAST, LIBRARY)

# Echo (closed, open and capacity's probes) over WebSocket: either stack.
_ECHO_MODULES = {FAST: "bench.load.worker", LIBRARY: "bench.load.library_worker"}
# Socket.IO over HTTP long-polling: the generator's own HTTP/1.1 client (python-socketio's
# client over aiohttp was the bottleneck at 2,000-2,600 msgs/s: docs/measurements.md).
_POLLING_MODULE = "bench.load.polling_worker"


def one_stack_modes() -> tuple[str, ...]:
    """Modes with a worker of their own and the one stack it runs on (bench.modes: connect
    storms, fan-out and memory on the fast client, reconnect storms on the libraries')."""
    return tuple(m.name for m in modes.all_modes() if m.stack is not None)


@dataclass(frozen=True)
class ClientStack:
    client: str  # the row's label: FAST or LIBRARY
    module: str  # the worker process's entry module


def client_stack(mode: str, transport: str, requested: str = FAST) -> ClientStack:
    """The stack that runs a cell of ``mode`` over ``transport`` when ``requested`` is asked
    for; a mode or transport with one stack only gets that one, whatever was asked."""
    if requested not in CLIENTS:
        raise ValueError(f"unknown client {requested!r}")
    stack = modes.get(mode).stack
    if stack is not None:
        return ClientStack(*stack)
    if transport == "polling":
        return ClientStack(FAST, _POLLING_MODULE)
    return ClientStack(requested, _ECHO_MODULES[requested])


def only_client(mode: str, transport: str) -> str | None:
    """The one client a mode or transport runs on, or None when either can."""
    fast, library = (client_stack(mode, transport, c).client for c in CLIENTS)
    return fast if fast == library else None
