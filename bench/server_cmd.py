"""A server named by its command line (``--server-cmd``): the command parsed and checked, its
port filled in, and the wait until that port accepts connections.

This is how a team measures its own application under the reference servers' conditions. The
harness did not write the program, so it knows nothing of it beyond its command: no READY
line, no ``--loop``, no fairness contract. ``bench.runner.UserServer`` runs the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

import psutil

from bench.errors import UsageError

PORT_FIELD = "{port}"
HOST_FIELD = "{host}"
# A label names the result rows and the cell's log folder: one path component, no spaces.
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Programs that run a script or module named by their arguments: the label is the script's.
_INTERPRETER = re.compile(r"(python|pypy|node|nodejs|bun|deno|ruby|php|perl)[\d.]*")
# Between two attempts to connect while the server starts.
_POLL_INTERVAL_S = 0.05
_CONNECT_TIMEOUT_S = 1.0


def parse_server_cmd(text: str) -> tuple[str, ...]:
    """The argument list of ``--server-cmd`` (split like a POSIX shell, never run by one);
    UsageError unless it names a program and holds ``{port}``."""
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise UsageError(f"--server-cmd {text!r}: {str(exc).lower()}") from None
    if not argv:
        raise UsageError("--server-cmd is empty")
    if not any(PORT_FIELD in word for word in argv[1:]):
        raise UsageError(
            f"--server-cmd {text!r} has no {PORT_FIELD}: the harness picks the port and puts "
            f"it there, e.g. 'python my_server.py --port {PORT_FIELD}'"
        )
    return argv


def check_program(argv: Sequence[str]) -> None:
    """UsageError when the command's program is not an executable file (on PATH, or at the
    path given, relative to the current folder)."""
    program = argv[0]
    if shutil.which(program) is None:
        where = "" if os.sep in program else " on PATH"
        raise UsageError(f"--server-cmd: no executable program {program!r}{where}")


def default_label(argv: Sequence[str], protocol: str) -> str:
    """The rows' name for the server when no --label is given: the script or module an
    interpreter runs (``python my_server.py`` is ``my_server``), else the program's basename;
    the protocol when neither makes a label."""
    name = Path(argv[0]).name
    if _INTERPRETER.fullmatch(name):
        words = list(argv[1:])
        for index, word in enumerate(words):
            if word == "-m" and index + 1 < len(words):
                name = words[index + 1].rsplit(".", 1)[-1]
                break
            if not word.startswith("-"):
                name = Path(word).stem
                break
    return name if _LABEL.fullmatch(name) else protocol


def check_label(label: str) -> None:
    if not _LABEL.fullmatch(label):
        raise UsageError(
            f"--label {label!r}: letters, digits, '.', '_' and '-' only (it names files), "
            "at most 64"
        )


def fill_in(argv: Sequence[str], host: str, port: int) -> list[str]:
    """The command to run: ``{port}`` (and ``{host}``, when used) replaced in every word."""
    return [word.replace(PORT_FIELD, str(port)).replace(HOST_FIELD, host) for word in argv]


def free_port(host: str) -> int:
    """A port nothing listens on now (the kernel's pick); the server binds it a moment later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


async def wait_until_listening(
    process: asyncio.subprocess.Process, host: str, port: int, timeout_s: float
) -> bool:
    """True once ``host:port`` accepts a TCP connection; False when ``process`` exited first
    or ``timeout_s`` passed (the caller tells which by the process's return code)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    exited = asyncio.ensure_future(process.wait())
    try:
        while not exited.done():
            with contextlib.suppress(OSError, TimeoutError):
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), _CONNECT_TIMEOUT_S
                )
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return True
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                return False
            await asyncio.wait({exited}, timeout=min(_POLL_INTERVAL_S, remaining_s))
        return False
    finally:
        exited.cancel()


def listening_pid(root_pid: int, port: int) -> int:
    """The process, among ``root_pid`` and its descendants, that listens on ``port``: what is
    sampled (a launcher such as ``npm start`` or a shell script is not the server). The root
    when none can be told."""
    try:
        root = psutil.Process(root_pid)
        family = [root, *root.children(recursive=True)]
    except psutil.Error:
        return root_pid
    for process in family:
        with contextlib.suppress(psutil.Error):
            for connection in process.net_connections(kind="tcp"):
                if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                    return process.pid
    return root_pid


def pin_family(root_pid: int, cpus: frozenset[int]) -> None:
    """Pin every thread of ``root_pid`` and of its descendants to ``cpus``: a launcher's
    children may have started before bench.processes pinned the launcher, and a process's
    affinity is its threads' (each thread's own, inherited by the threads it starts)."""
    if not cpus:
        return
    try:
        root = psutil.Process(root_pid)
        family = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    for process in family:
        with contextlib.suppress(psutil.Error):
            for thread in process.threads():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(thread.id, cpus)


def signal_group(pgid: int, signum: signal.Signals) -> None:
    """Signal every process of the group the server leads (bench.processes starts each child
    in a group of its own), so that what its command started goes with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
