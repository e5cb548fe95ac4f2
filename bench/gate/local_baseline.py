"""``wsbench local-baseline``: a baseline whose instruction counts compare with a run's.

Instruction counts repeat on one machine to the instruction, but not across CPUs or software
(bench.gate.check.COUNT_FINGERPRINT_FIELDS): a baseline counted elsewhere cannot judge them.
When the baseline's stamp matches the run's in all of that, its files are copied as they are.
Otherwise the baseline's own command (its meta.json) runs again here on the code that recorded
it, the last commit that changed the baseline's folder, checked out in a temporary git
worktree that is removed afterwards whatever happens, with this checkout's Python environment.
This is what callgrind-based gates do (measure base and candidate on the same runner); no
library does it for a results folder, hence by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.analyze.tidy import load_meta
from bench.errors import RunFailed, UsageError
from bench.gate.check import count_differences
from bench.gate.command import promote_baseline
from bench.metrics.environment import cpu_flags_digest
from bench.processes import child_environment, repo_root

GIT_TIMEOUT_S = 60.0
# The baseline's command runs to its end within this (the instructions scenario: about a
# minute for the four Python servers; the quick suite with 5 repeats: about 10 minutes).
RUN_TIMEOUT_S = 3600.0
NODE_MODULES = Path("servers") / "node" / "node_modules"


def rerun_argv(command: list[str], out: Path) -> list[str]:
    """The baseline's ``wsbench run ...`` arguments after ``wsbench``, writing to ``out``."""
    if command[:2] != ["wsbench", "run"]:
        raise UsageError(
            f"the baseline was not made by `wsbench run` (its command: {' '.join(command)[:80]})"
        )
    argv, skip = [], False
    for word in command[1:]:
        if skip:
            skip = False
        elif word == "--out":
            skip = True
        elif not word.startswith("--out="):
            argv.append(word)
    return [*argv, "--out", str(out)]


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=GIT_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunFailed(f"git {args[0]} did not finish: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UsageError(f"git {' '.join(args)[:60]}: {last}")
    return done.stdout.strip()


def recording_commit(baseline: Path, root: Path) -> str:
    """The last commit that changed ``baseline``, which must be committed as it is."""
    folder = baseline.resolve()
    if not folder.is_relative_to(root):
        raise UsageError(f"{baseline} is not in this repository: its code cannot be checked out")
    relative = str(folder.relative_to(root))
    status = _git(root, "status", "--porcelain", "--ignored", "--", relative)
    commit = _git(root, "log", "-1", "--format=%H", "--", relative)
    if status and commit:
        raise UsageError(f"{baseline} has uncommitted changes: the code that made it is unknown")
    if not commit:
        raise UsageError(f"{baseline} is not committed: the code that made it is unknown")
    return commit


def _run_baseline_command(worktree: Path, argv: list[str]) -> None:
    env = child_environment(own_program=False)
    env["PYTHONPATH"] = str(worktree)  # the worktree's bench and servers, not this checkout's
    # Its own session, so that a timeout or an interrupt stops every process it started.
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", *argv], cwd=worktree, env=env, start_new_session=True
    )
    try:
        status = process.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RunFailed(f"the baseline's command ran beyond {RUN_TIMEOUT_S:g} s") from None
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    if status != 0:
        raise RunFailed(f"the baseline's command exited {status} (its output is above)")


def measure_at(commit: str, argv: list[str], root: Path) -> None:
    """Run ``wsbench`` with ``argv`` on ``commit``'s code in a temporary worktree."""
    worktree = Path(tempfile.mkdtemp(prefix="wsbench-baseline-"))
    added = False
    try:
        _git(root, "worktree", "add", "--detach", str(worktree), commit)
        added = True
        if (root / NODE_MODULES).is_dir():  # installed from the same lockfile, or not needed
            (worktree / NODE_MODULES).symlink_to(root / NODE_MODULES, target_is_directory=True)
        _run_baseline_command(worktree, argv)
    finally:
        if added:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(worktree)], cwd=root,
                capture_output=True, timeout=GIT_TIMEOUT_S, check=False,
            )  # fmt: skip
        shutil.rmtree(worktree, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=root, capture_output=True,
                       timeout=GIT_TIMEOUT_S, check=False)  # fmt: skip


def local_baseline(baseline: Path, like: Path, out: Path, force: bool) -> str:
    """Write to ``out`` a baseline comparable with the run in ``like``; what was done, in
    one line."""
    baseline_meta, run_meta = load_meta(baseline), load_meta(like)
    for folder, meta in ((baseline, baseline_meta), (like, run_meta)):
        if not meta:
            raise UsageError(f"{folder} holds no meta.json")
    differences = count_differences(baseline_meta, run_meta)
    if not differences:
        promote_baseline(baseline, out, force)
        return f"{baseline} was counted on this CPU and software: copied to {out}"
    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError(f"--out {out} is not empty (use --force to replace it)")
    root = repo_root()
    commit = recording_commit(baseline, root)
    argv = rerun_argv(list(baseline_meta.get("command") or []), out.resolve())
    if force and out.exists():
        shutil.rmtree(out)
    print(
        f"wsbench local-baseline: {baseline} was counted elsewhere ({differences[0]}"
        f"{'; ...' if len(differences) > 1 else ''}): measuring its commit {commit[:12]} here",
        flush=True,
    )
    measure_at(commit, argv, root)
    _stamp(out, {"of": str(baseline), "commit": commit, "because": differences})
    left = count_differences(load_meta(out), run_meta)
    if left:
        return f"{out}: measured at {commit[:12]}, still differing from the run in {left[0]}"
    return f"{out}: {baseline}'s command measured at {commit[:12]} on this machine"


def _stamp(out: Path, record: dict[str, Any]) -> None:
    path = out / "meta.json"
    meta = json.loads(path.read_text())
    meta["local_baseline"] = record
    # Measured on this machine, by a harness that may predate the stamp's CPU flags.
    meta.setdefault("machine", {}).setdefault("cpu_flags_sha256", cpu_flags_digest())
    path.write_text(json.dumps(meta, indent=2) + "\n")
