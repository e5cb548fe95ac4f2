"""The message broker between several server processes: a real ``redis-server`` the harness
starts on a free loopback port (persistence off) and stops, or a Redis the user names.

Servers relay broadcasts through it (servers/broker.py, python-socketio's AsyncRedisManager);
the harness only starts it, checks it answers, kills and restarts it (broker faults) and stamps
its version.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.errors import UsageError
from bench.processes import start_process, stop_process
from bench.server_cmd import free_port
from bench.target import is_loopback
from servers.common import broker_url_error

REDIS_SERVER = "redis-server"
INSTALL_HINT = "apt-get install redis-server"
# How long a fresh redis-server may take to answer PING, and one PING may take.
READY_TIMEOUT_S = 10.0
PING_TIMEOUT_S = 1.0
POLL_S = 0.05


class BrokerFailed(Exception):
    """The broker could not be started or reached (one line)."""


def missing_reason() -> str:
    """Why a harness-started broker cannot run here ("" when it can)."""
    if shutil.which(REDIS_SERVER) is None:
        return f"redis-server is not installed ({INSTALL_HINT})"
    return ""


def redis_server_version() -> str:
    """``redis-server --version``'s version number, or "" when it is not installed."""
    path = shutil.which(REDIS_SERVER)
    if path is None:
        return ""
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    found = re.search(r"v=(\S+)", out)
    return found.group(1) if found else out.strip()


def check_redis_url(option: str, url: str) -> str:
    """A ``redis://HOST:PORT/DB`` URL on a loopback address, or UsageError in one line. The
    form is the servers' own rule (servers.common.broker_url_error); the harness also wants
    the port named and the host on this machine."""
    problem = broker_url_error(url)
    if problem is None and urlsplit(url).port is None:
        problem = "no port"
    if problem is not None:
        raise UsageError(
            f"{option}: give redis://HOST:PORT/DB, the database a number ({problem}; got {url!r})"
        )
    host = urlsplit(url).hostname or ""
    if not is_loopback(host):
        raise UsageError(
            f"{option}: {host} is not a loopback address; load and brokers stay "
            "on this machine (127.0.0.0/8, ::1)"
        )
    return url


async def ping(url: str, timeout_s: float = PING_TIMEOUT_S) -> str:
    """The server's version when ``url`` answers PING within ``timeout_s``, else BrokerFailed."""
    import redis.asyncio as redis  # only runs that use a broker need redis-py loaded

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        await asyncio.wait_for(client.ping(), timeout_s)
        info = await asyncio.wait_for(client.info("server"), timeout_s)
        return str(info.get("redis_version", ""))
    except (TimeoutError, OSError, redis.RedisError) as exc:
        reason = exc or type(exc).__name__
        raise BrokerFailed(f"the broker at {url} does not answer: {reason}") from None
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


@dataclass
class RedisServer:
    """A ``redis-server`` of our own on a free loopback port: no persistence, no config file,
    logging to ``log_path``; pinned to ``cpus`` (the servers' CPUs: it is their infrastructure,
    and the generator's CPU stays the generator's)."""

    log_path: Path
    cpus: frozenset[int] = frozenset()
    host: str = "127.0.0.1"
    port: int = 0
    process: asyncio.subprocess.Process | None = None
    version: str = ""

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    async def start(self, port: int = 0) -> None:
        """Start it (``port`` 0: a free one) and wait until it answers; BrokerFailed if not."""
        path = shutil.which(REDIS_SERVER)
        if path is None:
            raise BrokerFailed(missing_reason())
        self.port = port or self.port or free_port(self.host)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Absolute: it runs in the log's folder, where a relative --out's path means nothing
        # (a fresh clone's make bench writes under results/runs/, relative, and every
        # redis-server exited at start).
        log_file = self.log_path.resolve()
        argv = [path, "--bind", self.host, "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
                "--logfile", str(log_file)]  # fmt: skip
        self.process = await start_process(
            argv, cpus=self.cpus, stdout=asyncio.subprocess.DEVNULL, cwd=log_file.parent
        )
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_S
        while True:
            if self.process.returncode is not None:
                raise BrokerFailed(
                    f"redis-server exited at start (status {self.process.returncode}; "
                    f"log: {self.log_path})"
                )
            try:
                self.version = await ping(self.url)
                return
            except BrokerFailed:
                if asyncio.get_running_loop().time() > deadline:
                    raise BrokerFailed(
                        f"redis-server did not answer on {self.host}:{self.port} within "
                        f"{READY_TIMEOUT_S:g} s (log: {self.log_path})"
                    ) from None
                await asyncio.sleep(POLL_S)

    async def kill(self) -> None:
        """SIGKILL (a broker crash: no goodbye to its clients)."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await stop_process(self.process)

    async def stop(self) -> None:
        if self.process is not None:
            await stop_process(self.process)


def redis_py_version() -> str:
    try:
        import redis
    except ImportError:
        return ""
    return str(getattr(redis, "__version__", ""))
