"""The servers under test: one record each, the one place that names them.

Everything that varies by server comes from here: how to start it and tell it is ready, the
event loops it runs on, the WebSocket implementation it stands on (which pairs a Socket.IO
server with the raw server that isolates what Socket.IO costs), the scenarios of the suites it
joins, its version stamp and its colour on every chart. Suites name servers by selector
(``all``, ``raw``, ``socketio``); the report's ratio columns, the gate's pairs, the charts and
the tests' parametrisation read the records. Adding a server is one record here plus its file
under ``servers/``.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

from servers.common import LOOPS as PYTHON_LOOPS

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = REPO_ROOT / "servers" / "node"
NODE_LOOPS = ("libuv",)  # Node's one event loop (the servers take --loop libuv)
# Every server of the harness takes these after its command: --host H --port P --loop L, then
# --transports T (Socket.IO) and --handicap-us N when a cell asks; it prints READY <port>.
Runtime = Literal["python", "node"]


@dataclass(frozen=True)
class ServerInfo:
    name: str
    protocol: Literal["raw", "socketio"]
    description: str
    # The WebSocket implementation it stands on: a Socket.IO server's ratio to the raw server
    # on the same one (and runtime) isolates what Socket.IO itself costs.
    websocket: str
    # The command that starts it, before the common arguments; "{python}" and "{node}" stand
    # for the interpreters.
    command: tuple[str, ...]
    runtime: Runtime = "python"
    loops: tuple[str, ...] = PYTHON_LOOPS
    # Distributions (Python) or npm packages (Node) whose versions go into meta.json.
    packages: tuple[str, ...] = ()
    colour: str = "#7f7f7f"
    # The suites' scenarios it joins when they select servers by kind (None: every one).
    scenarios: frozenset[str] | None = None
    # Runs as several processes on one port behind a Redis broker (--server-workers): the
    # server takes --reuse-port, --worker-id and --broker-url (servers.common).
    scales_out: bool = True
    # Shares a port by taking its listening socket from the harness (--listen-fd N), not by
    # binding with --reuse-port: Node's listen has no reusePort before 22.12/23.1, so the
    # harness binds each process's socket with SO_REUSEPORT and hands it over (bench.runner).
    listen_fd: bool = False

    @property
    def raw_counterpart(self) -> str | None:
        return raw_counterpart(self.name)

    @property
    def module(self) -> str:
        """The Python module of a Python server ("" for others)."""
        return self.command[2] if self.command[:2] == ("{python}", "-m") else ""

    def argv(self) -> list[str]:
        """The command with the interpreters filled in (common arguments not included)."""
        interpreters = {"{python}": sys.executable, "{node}": shutil.which("node") or "node"}
        return [interpreters.get(part, part) for part in self.command]

    def missing(self) -> str | None:
        """Why this server cannot start on this machine (one line naming what to install), or
        None when it can."""
        if self.runtime == "node":
            if shutil.which("node") is None:
                return f"{self.name} needs Node.js 20: apt-get install nodejs npm"
            if not (NODE_DIR / "node_modules").is_dir():
                return (
                    f"{self.name} needs its npm packages: npm ci --prefix servers/node "
                    "(make bench and make test run it)"
                )
        return None

    def versions(self) -> dict[str, str | None]:
        """The installed version of each of its packages (None when not installed)."""
        found: dict[str, str | None] = {}
        for package in self.packages:
            if self.runtime == "node":
                manifest = NODE_DIR / "node_modules" / package / "package.json"
                try:
                    found[package] = str(json.loads(manifest.read_text())["version"])
                except (OSError, ValueError, KeyError):
                    found[package] = None
            else:
                try:
                    found[package] = metadata.version(package)
                except metadata.PackageNotFoundError:
                    found[package] = None
        return found


def _python(module: str) -> tuple[str, ...]:
    return ("{python}", "-m", module)


# The scenarios the Node reference servers join in the suites. Not broker-fault: the Redis
# adapter leaves a failed publish's promise unhandled, which ends a Node process whose broker
# connection drops with a publish in flight (Node's default for unhandled rejections).
NODE_SCENARIOS = frozenset(
    {"echo", "ack", "memory", "connect", "fanout", "scaleout", "broker-fault", "shipped", "tls"}
)

SERVERS: dict[str, ServerInfo] = {
    info.name: info
    for info in (
        ServerInfo(
            "websockets", "raw", "websockets asyncio server", "websockets",
            _python("servers.websockets"), packages=("websockets",), colour="#1f77b4",
        ),
        ServerInfo(
            "aiohttp", "raw", "aiohttp WebSocketResponse", "aiohttp",
            _python("servers.aiohttp"), packages=("aiohttp",), colour="#ff7f0e",
        ),
        ServerInfo(
            "socketio-aiohttp", "socketio", "python-socketio AsyncServer on aiohttp", "aiohttp",
            _python("servers.socketio_aiohttp"),
            packages=("python-socketio", "python-engineio", "aiohttp"), colour="#2ca02c",
        ),
        # uvicorn runs websockets' Sans-I/O protocol, so websockets is its raw counterpart.
        ServerInfo(
            "socketio-asgi", "socketio", "python-socketio ASGIApp under uvicorn", "websockets",
            _python("servers.socketio_asgi"),
            packages=("python-socketio", "python-engineio", "uvicorn", "websockets"),
            colour="#d62728",
        ),
        ServerInfo(
            "node-ws", "raw", "Node.js ws 8 WebSocketServer", "ws",
            ("{node}", "servers/node/ws.js"), runtime="node", loops=NODE_LOOPS,
            packages=("ws",), colour="#9467bd", scenarios=NODE_SCENARIOS, listen_fd=True,
        ),
        # socket.io's default wsEngine is ws, so node-ws is its raw counterpart.
        ServerInfo(
            "node-socketio", "socketio", "Node.js socket.io 4 Server", "ws",
            ("{node}", "servers/node/socketio.js"), runtime="node", loops=NODE_LOOPS,
            packages=("socket.io", "engine.io", "ws"), colour="#8c564b",
            scenarios=NODE_SCENARIOS, listen_fd=True,
        ),
    )
}  # fmt: skip

# Every event loop some server runs on.
LOOPS: tuple[str, ...] = tuple(dict.fromkeys(loop for s in SERVERS.values() for loop in s.loops))
SELECTORS = ("all", "raw", "socketio")


def raw_counterpart(name: str) -> str | None:
    """For a Socket.IO server, the raw server on the same WebSocket implementation and
    runtime: the pair whose ratio isolates what Socket.IO itself costs."""
    info = SERVERS.get(name)
    if info is None or info.protocol != "socketio":
        return None
    for other in SERVERS.values():
        if (
            other.protocol == "raw"
            and other.websocket == info.websocket
            and other.runtime == info.runtime
        ):
            return other.name
    return None


def raw_servers() -> list[str]:
    return [name for name, info in SERVERS.items() if info.protocol == "raw"]


def select(selector: str | Iterable[str], scenario: str) -> list[str]:
    """Server names for a suite entry: an explicit list as it is, or a selector (``all``,
    ``raw``, ``socketio``) over the records that join ``scenario``."""
    if not isinstance(selector, str):
        return list(selector)
    if selector not in SELECTORS:
        raise ValueError(f"unknown server selector {selector!r}")
    return [
        name
        for name, info in SERVERS.items()
        if selector in ("all", info.protocol)
        and (info.scenarios is None or scenario in info.scenarios)
    ]
