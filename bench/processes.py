"""Child processes of the harness: started from argument lists, pinned, tracked, always stopped.

Every process the harness starts goes through ``start_process`` and is registered until it is
stopped; ``stop_all`` (called in ``finally`` blocks and on SIGTERM) terminates, then kills, what
is left, so no server or worker outlives a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

STOP_GRACE_S = 5.0
# Workers report encoded histograms on one line: allow long lines.
STREAM_LIMIT_BYTES = 16 * 1024 * 1024

_live: set[asyncio.subprocess.Process] = set()


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def generator_and_server_cpus() -> tuple[frozenset[int], frozenset[int]]:
    """Disjoint CPU sets (server, generator); empty sets mean "not pinned" (one CPU only)."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return frozenset(), frozenset()
    return frozenset(available[:1]), frozenset(available[1:])


def child_environment(own_program: bool = True) -> dict[str, str]:
    """The environment of a child: one BLAS thread; the harness's own programs also get the
    repository root on PYTHONPATH."""
    child_env = dict(os.environ)
    # One thread per process for numpy's BLAS: nothing here needs more, and threads would
    # compete with the measured loops.
    child_env.setdefault("OPENBLAS_NUM_THREADS", "1")
    if own_program:
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(repo_root()), child_env.get("PYTHONPATH", "")) if p
        )
    return child_env


async def start_process(
    argv: Sequence[str],
    *,
    cpus: frozenset[int] = frozenset(),
    stdin: int | None = asyncio.subprocess.DEVNULL,
    stdout: int | None = asyncio.subprocess.PIPE,
    stderr: int | Path | None = None,
    env: dict[str, str] | None = None,
    inherit_env: bool = True,
    cwd: Path | None = None,
    pass_fds: Sequence[int] = (),
) -> asyncio.subprocess.Process:
    """Start ``argv`` (no shell); pin it to ``cpus`` when given. The harness's own programs
    (no ``cwd``) run in the repository root with it on PYTHONPATH; another program (a
    --server-cmd) runs in ``cwd`` with the caller's PYTHONPATH untouched. ``pass_fds``: file
    descriptors the child inherits under the same numbers (every other one is closed in it);
    the caller still holds its own copies. ``inherit_env`` False: ``env`` is the child's whole
    environment."""
    stderr_target: int | None
    log_file = None
    if isinstance(stderr, Path):
        log_file = stderr.open("ab")
        stderr_target = log_file.fileno()
    else:
        stderr_target = stderr
    child_env = child_environment(own_program=cwd is None) if inherit_env else {}
    if env:
        child_env.update(env)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr_target,
            cwd=repo_root() if cwd is None else cwd,
            env=child_env,
            limit=STREAM_LIMIT_BYTES,
            pass_fds=tuple(pass_fds),
            # Its own process group, so a Ctrl-C in the terminal reaches the harness only; not
            # its own session: with the kernel's autogroup scheduling (the default on desktop
            # and VM kernels) each session is a scheduling group competing as a whole, so an
            # idle-priority loop (bench.keepawake) in a session of its own took half the
            # server's core, where in one group with the server it yields at once.
            process_group=0,
        )
    finally:
        if log_file is not None:
            log_file.close()
    _live.add(process)
    if cpus:
        # Pinned right after the fork/exec, before the interpreter has started any thread.
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(process.pid, cpus)
    return process


async def stop_process(process: asyncio.subprocess.Process, grace_s: float = STOP_GRACE_S) -> int:
    """SIGTERM, wait ``grace_s``, then SIGKILL; returns the exit status."""
    try:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        return process.returncode if process.returncode is not None else -1
    finally:
        _live.discard(process)


async def stop_all() -> None:
    await asyncio.gather(*(stop_process(p) for p in list(_live)), return_exceptions=True)


def python_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
