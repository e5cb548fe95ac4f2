"""Shared fixtures: servers under test as child processes, started with an argument list and
always stopped, and the time factor that scales every timeout in the tests."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# One knob for slow machines (CI, valgrind, coverage): every timeout is multiplied by it.
TIME_FACTOR = float(os.environ.get("WSBENCH_TIME_FACTOR", "1"))
READY_TIMEOUT_S = 10.0 * TIME_FACTOR
STOP_TIMEOUT_S = 5.0 * TIME_FACTOR
# Examples per property-based (hypothesis) test: 1,000 unless told; `make test-unit` asks for
# fewer so that the unit tier stays under a minute on a busy two-core machine.
PROPERTY_EXAMPLES = int(os.environ.get("WSBENCH_PROPERTY_EXAMPLES", "1000"))

_READY_LINE = re.compile(rb"READY (\d+)\n")


@dataclass(frozen=True)
class ServerProcess:
    name: str
    loop: str
    process: subprocess.Popen[bytes]
    port: int


def read_stdout_line(process: subprocess.Popen[bytes], timeout_s: float, what: str) -> bytes:
    """The child's next stdout line, within ``timeout_s``; ``what`` names it in errors."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    received = b""
    while not received.endswith(b"\n"):
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            raise TimeoutError(f"no {what} within {timeout_s:.1f} s; got {received[:200]!r}")
        readable, _, _ = select.select([fd], [], [], remaining_s)
        if readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                code = process.wait(timeout=STOP_TIMEOUT_S)
                raise RuntimeError(f"exited with {code} before {what}; got {received[:200]!r}")
            received += chunk
    return received


def read_ready_port(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    """Wait for the server's first stdout line, which must be ``READY <port>``."""
    received = read_stdout_line(process, timeout_s, "READY")
    match = _READY_LINE.fullmatch(received)
    if match is None:
        raise RuntimeError(f"expected exactly 'READY <port>\\n' on stdout, got {received!r}")
    return int(match.group(1))


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL. Returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    code = process.wait()
    if process.stdout is not None:
        process.stdout.close()
    return code


@contextmanager
def running_server(name: str, loop: str, *extra: str) -> Iterator[ServerProcess]:
    """Run ``python -m servers.<name>`` on a free loopback port until the block ends."""
    args = [sys.executable, "-m", f"servers.{name}"]
    args += ["--host", "127.0.0.1", "--port", "0", "--loop", loop, *extra]
    # stderr is inherited, so pytest shows the server's errors with a failing test.
    process = subprocess.Popen(args, cwd=REPO_ROOT, stdout=subprocess.PIPE)
    try:
        port = read_ready_port(process, READY_TIMEOUT_S)
        yield ServerProcess(name=name, loop=loop, process=process, port=port)
    finally:
        code = stop_process(process)
    # Reached only when the block succeeded: a server that had to be killed, or failed while
    # stopping, fails the test that used it.
    if code != 0:
        raise RuntimeError(f"servers.{name} ({loop}) did not stop cleanly: exit code {code}")


@pytest.fixture
def server_process() -> Iterator[Callable[..., ServerProcess]]:
    """``server_process(name, loop, *extra_args)`` starts a server; it is stopped when the
    test ends."""
    with ExitStack() as stack:
        yield lambda name, loop, *extra: stack.enter_context(running_server(name, loop, *extra))


@pytest.fixture
def start_server(
    server_process: Callable[..., ServerProcess],
) -> Callable[..., int]:
    """``start_server(name, loop, *extra_args)`` starts a server and returns its port."""
    return lambda name, loop, *extra: server_process(name, loop, *extra).port
