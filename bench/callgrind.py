"""Instructions counted by valgrind's callgrind in a running server process (the I/O edge of
the ``instructions`` mode, bench.modes.instructions).

The server starts under ``valgrind --tool=callgrind --instr-atstart=no`` (instrumentation off
until the harness turns it on, so start-up and warm-up run at valgrind's uninstrumented speed)
with a fixed ``PYTHONHASHSEED`` (str hashes, and so dict and set layouts, repeat). The harness
drives it with ``callgrind_control``: instrumentation on, counters zeroed, then a dump whose
``summary:`` line is the user-space instructions executed since the zero. No library does
this: valgrind has no Python bindings, and callgrind_control is its supported command.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import platform
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import RunFailed

VALGRIND = "valgrind"
CONTROL = "callgrind_control"
# str hashing seeded alike in every run: dict and set iteration orders, and the instructions
# they cost, repeat (measured: 2,000-echo totals agreed to 0.07% with the seed fixed).
HASH_SEED = "0"
# callgrind_control talks to the process through valgrind's gdbserver; a command answers in
# milliseconds, but the process may be busy in a long basic block.
CONTROL_TIMEOUT_S = 30.0
DUMP_WAIT_S = 10.0
_SUMMARY = re.compile(r"^summary:\s+(\d+)", re.MULTILINE)


def missing_reason() -> str | None:
    """Why instruction counts cannot be taken here (None: they can)."""
    for program in (VALGRIND, CONTROL):
        if shutil.which(program) is None:
            return f"{program} is not installed (Debian: apt-get install valgrind)"
    return None


async def _output(*argv: str) -> tuple[int, bytes]:
    """Run a valgrind tool to its end within CONTROL_TIMEOUT_S: exit status and output
    (stdout and stderr together); RunFailed, naming it, when it does not answer."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), CONTROL_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RunFailed(f"{' '.join(argv)} did not answer in {CONTROL_TIMEOUT_S:g} s") from None
    return process.returncode or 0, out


async def version() -> str:
    """``valgrind-3.19.0``, as valgrind prints it."""
    _, out = await _output(VALGRIND, "--version")
    return out.decode(errors="replace").strip()


def wrapper(out_dir: Path) -> list[str]:
    """The argument list before the server's own: its counts go to files in ``out_dir``."""
    return [
        shutil.which("setarch") or "setarch", platform.machine(), "--addr-no-randomize",
        shutil.which(VALGRIND) or VALGRIND, "--tool=callgrind", "--instr-atstart=no",
        f"--callgrind-out-file={out_dir / 'callgrind.out.%p'}",
    ]  # fmt: skip


# Where the counted server's code and Python live, and the whole of its environment, decide
# its heap layout, and with it the counts: with addresses fixed (setarch), the lengths of the
# path strings in every module's __file__ and code object, and of the environment, move where
# each buffer lands, and memcpy's alignment prologues with it. Measured 2026-12-03, the same
# commit, the same .venv: aiohttp 38,242.7 instructions per echo from /tmp/a and 38,627.7
# (+1.0%) from /tmp/wsbench-ci-clone-long-name/main; a CI clone read 39,427. So the server
# imports everything through links of fixed length and gets a fixed environment.
# The folder's name is the same in every run, so that nothing under it varies (its strings
# are hashed too; the 1.2% a fresh clone's first count moved was the bytecode, below). One run
# at a time may use it: a lock (flock) on a file inside says which.
LAYOUT_FOLDER = Path("/tmp/wsbench-callgrind")
FIXED_PATH = "/usr/local/bin:/usr/bin:/bin"
BYTECODE = "bytecode"
COMPILE_TIMEOUT_S = 120.0


@dataclass
class Layout:
    """``/tmp/wsbench-callgrind`` holding ``r``, a link to the repository, and ``v``, a link
    to the Python environment (sys.prefix), for one counted run at a time."""

    folder: Path
    lock: Any = None  # the open lock file, held while the run uses the links

    @classmethod
    def make(cls, root: Path, folder: Path = LAYOUT_FOLDER) -> Layout:
        """The links, made anew for ``root``; RunFailed, in one line, when another run holds
        the folder or it cannot be made."""
        try:
            folder.mkdir(mode=0o755, exist_ok=True)
            lock = open(folder / ".lock", "a")  # noqa: SIM115 (held until remove)
        except OSError as exc:
            raise RunFailed(f"cannot use {folder} for the counted server: {exc}") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise RunFailed(
                f"another instructions run is using {folder}: counted runs go one at a time"
            ) from None
        layout = cls(folder, lock)
        try:
            for name, target in (("r", root), ("v", Path(sys.prefix))):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folder / name)
                (folder / name).symlink_to(target, target_is_directory=True)
        except OSError as exc:
            layout.remove()
            raise RunFailed(f"cannot link the counted server's code in {folder}: {exc}") from None
        return layout

    @property
    def python(self) -> str:
        """This Python, reached through the link (a virtualenv's prefix is where its
        pyvenv.cfg is found, so its site-packages paths go through the link too); the
        interpreter itself when it is not under sys.prefix/bin."""
        executable = Path(sys.executable)
        if executable.parent != Path(sys.prefix) / "bin":
            return sys.executable
        return str(self.folder / "v" / "bin" / executable.name)

    def environment(self, settings: dict[str, str]) -> dict[str, str]:
        """The server's whole environment: fixed values, and the harness's ``settings``."""
        return {
            "PATH": FIXED_PATH,
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(self.folder / "r"),
            # The current folder, whatever it is, is not put on sys.path.
            "PYTHONSAFEPATH": "1",
            "PYTHONHASHSEED": HASH_SEED,
            # Bytecode from this run's own cache only (``compile``), none written: a .pyc
            # holds the path it was compiled at (another checkout's, or the real one behind
            # the link), and its strings moved the count (docs/gate.md).
            "PYTHONPYCACHEPREFIX": str(self.folder / BYTECODE),
            "PYTHONDONTWRITEBYTECODE": "1",
            "OPENBLAS_NUM_THREADS": "1",
            **settings,
        }

    async def compile(self, command: list[str]) -> None:
        """Fill this run's bytecode cache, afresh, at native speed: ``command`` (the server's
        Python argument list) is run with ``--help``, which imports its modules and exits.
        What it imports later, at run time, the counted server compiles from source, the same
        in every run. Compiling everything under valgrind instead added about 8 s a cell."""
        shutil.rmtree(self.folder / BYTECODE, ignore_errors=True)
        env = self.environment({})
        del env["PYTHONDONTWRITEBYTECODE"]
        process = await asyncio.create_subprocess_exec(
            *command, "--help", env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            _, err = await asyncio.wait_for(process.communicate(), COMPILE_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RunFailed(
                f"compiling the counted server took over {COMPILE_TIMEOUT_S:g} s"
            ) from None
        if process.returncode != 0:
            last = (err.decode(errors="replace").strip().splitlines() or ["?"])[-1]
            raise RunFailed(f"the counted server's modules did not import: {last}")

    def remove(self) -> None:
        """The links, the bytecode, the lock and the folder (another run may make them)."""
        shutil.rmtree(self.folder / BYTECODE, ignore_errors=True)
        for name in ("r", "v", ".lock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.folder / name)
        with contextlib.suppress(OSError):
            self.folder.rmdir()
        if self.lock is not None:
            self.lock.close()
            self.lock = None


def parse_summary(text: str) -> int:
    """The instructions (event Ir) a callgrind dump counted; ValueError when it has none."""
    found = _SUMMARY.search(text)
    if found is None:
        raise ValueError("no summary line in the callgrind dump")
    return int(found.group(1))


async def control(pid: int, option: str) -> None:
    """``callgrind_control <option> <pid>``, within CONTROL_TIMEOUT_S (RunFailed otherwise)."""
    status, out = await _output(CONTROL, option, str(pid))
    if status != 0 or b"OK" not in out:
        text = out.decode(errors="replace").strip().splitlines()
        raise RunFailed(f"{CONTROL} {option} {pid} failed: {text[-1] if text else '?'}")


def _dumps(out_dir: Path, pid: int) -> set[Path]:
    return set(out_dir.glob(f"callgrind.out.{pid}.*"))


async def dump_total(pid: int, out_dir: Path) -> int:
    """Dump the counters since the last zero and return their instruction total."""
    before = _dumps(out_dir, pid)
    await control(pid, "--dump")
    deadline = asyncio.get_running_loop().time() + DUMP_WAIT_S
    while True:
        new = _dumps(out_dir, pid) - before
        for path in new:
            text = path.read_text(errors="replace")
            if _SUMMARY.search(text) and "totals:" in text:  # written whole
                return parse_summary(text)
        if asyncio.get_running_loop().time() > deadline:
            raise RunFailed(f"callgrind wrote no dump for process {pid} within {DUMP_WAIT_S:g} s")
        await asyncio.sleep(0.05)
