"""The Node.js side of the tests: the reference servers under servers/node/ and Node's own
clients, installed once per session with ``npm ci`` and started like the Python servers."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from bench.catalog import SERVERS
from tests.conftest import READY_TIMEOUT_S, REPO_ROOT, TIME_FACTOR, read_ready_port, stop_process

NODE_DIR = REPO_ROOT / "servers" / "node"
# The scripts, by the names a harness registry would give the servers.
NODE_SERVERS = {"node-socketio": "socketio.js", "node-ws": "ws.js"}
# The packages the lock pins and the tests rely on (the Redis client and adapter: scale-out), so
# that a node_modules from before one of them was added is installed again.
NODE_PACKAGES = ("socket.io", "ws", "socket.io-client", "redis", "@socket.io/redis-adapter")
SKIP_REASON = "node-socketio/node-ws need Node.js 20 and npm: apt-get install nodejs npm"
REQUIRE_NODE_ENV = "WSBENCH_REQUIRE_NODE"
# npm ci downloads about 25 small packages (or takes them from npm's cache).
NPM_CI_TIMEOUT_S = 300.0 * TIME_FACTOR


def installed_versions() -> dict[str, str | None]:
    """The version of each of NODE_PACKAGES in servers/node/node_modules (None: missing)."""
    versions: dict[str, str | None] = {}
    for name in NODE_PACKAGES:
        manifest = NODE_DIR / "node_modules" / name / "package.json"
        versions[name] = json.loads(manifest.read_text())["version"] if manifest.is_file() else None
    return versions


def locked_versions() -> dict[str, str]:
    packages = json.loads((NODE_DIR / "package-lock.json").read_text())["packages"]
    return {name: packages[f"node_modules/{name}"]["version"] for name in NODE_PACKAGES}


@functools.cache
def _install() -> tuple[str, str] | None:
    """Run ``npm ci`` unless node_modules already holds the locked versions, once per session:
    ``("skip", reason)`` without Node.js, ``("fail", reason)`` when npm ci failed (remembered,
    so that it is not retried by every test). Sessions running at the same time take turns on
    a lock of package-lock.json, so that no one's npm ci deletes what another is installing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        # CI sets this, as WSBENCH_REQUIRE_BROWSER for Chromium, so that the tests cannot pass
        # there by skipping.
        if os.environ.get(REQUIRE_NODE_ENV) == "1":
            return "fail", f"{REQUIRE_NODE_ENV}=1 but {SKIP_REASON}"
        return "skip", SKIP_REASON
    with open(NODE_DIR / "package-lock.json") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed_versions() == locked_versions():
            return None
        try:
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=NPM_CI_TIMEOUT_S,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return "fail", f"npm ci in {NODE_DIR} took over {NPM_CI_TIMEOUT_S:.0f} s"
        except subprocess.CalledProcessError as exc:
            tail = exc.stderr.decode(errors="replace").strip().splitlines()[-5:]
            return "fail", f"npm ci in {NODE_DIR} failed: " + " / ".join(tail)
    return None


def require_node() -> None:
    """Skip the calling test (one line) without Node.js (fail it with WSBENCH_REQUIRE_NODE=1),
    fail it when the packages could not be installed; installs them the first time."""
    outcome = _install()
    if outcome is None:
        return
    verdict, reason = outcome
    if verdict == "skip":
        pytest.skip(reason)
    pytest.fail(reason, pytrace=False)


@dataclass(frozen=True)
class NodeServer:
    name: str
    process: subprocess.Popen[bytes]
    port: int


def node_server_argv(name: str, *extra: str) -> list[str]:
    """``node servers/node/X.js --host 127.0.0.1 --port 0 ...``: what a harness would run."""
    script = str(NODE_DIR / NODE_SERVERS[name])
    return ["node", script, "--host", "127.0.0.1", "--port", "0", *extra]


@contextmanager
def running_node_server(name: str, *extra: str) -> Iterator[NodeServer]:
    """Run a Node server on a free loopback port until the block ends; a server that had to be
    killed or failed while stopping fails the block (as tests.conftest.running_server)."""
    # stderr is inherited, so pytest shows the server's errors with a failing test.
    process = subprocess.Popen(
        node_server_argv(name, *extra), cwd=REPO_ROOT, stdout=subprocess.PIPE
    )
    try:
        port = read_ready_port(process, READY_TIMEOUT_S)
        yield NodeServer(name=name, process=process, port=port)
    finally:
        code = stop_process(process)
    if code != 0:
        raise RuntimeError(f"{name} did not stop cleanly: exit code {code}")


def runnable_server(name: str) -> str:
    """``name``, after skipping the calling test (one line) where it is a Node server and Node
    is missing (``require_node``)."""
    if SERVERS[name].runtime == "node":
        require_node()
    return name
