"""The idle-priority busy loops that keep pinned CPUs from halting (bench.keepawake)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

TIMEOUT_S = 20.0


def keepawake(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.keepawake", *args]


def wait_gone(pid: int, timeout_s: float) -> bool:
    try:
        psutil.Process(pid).wait(timeout_s)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return True


def test_it_runs_at_idle_priority_while_its_parent_lives() -> None:
    child = subprocess.Popen(keepawake(str(os.getpid())), cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while os.sched_getscheduler(child.pid) != os.SCHED_IDLE:
            assert child.poll() is None, "it exited while its parent lives"
            assert time.monotonic() < deadline, "never switched to SCHED_IDLE"
            time.sleep(0.05)
        time.sleep(0.3)
        assert child.poll() is None  # still spinning
        assert psutil.Process(child.pid).cpu_times().user > 0
    finally:
        child.kill()
        child.wait()


def test_it_ends_when_its_parent_is_gone() -> None:
    # A middle process starts the loop naming itself as parent, prints its PID, and exits.
    middle = subprocess.run(
        [sys.executable, "-c",
         "import os, subprocess, sys; "
         "p = subprocess.Popen([sys.executable, '-m', 'bench.keepawake', str(os.getpid())]); "
         "print(p.pid)"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, check=True,
    )  # fmt: skip
    orphan = int(middle.stdout.strip())
    assert wait_gone(orphan, TIMEOUT_S), "the loop outlived the process that started it"


def test_bad_arguments_are_one_line_and_exit_2() -> None:
    done = subprocess.run(keepawake("nope"), cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == "usage: python -m bench.keepawake PARENT_PID"


def keepawake_loops_seen(argv: list[str], out: Path) -> tuple[int, set[int]]:
    """Run ``wsbench ...`` and return its exit code and the CPUs its keep-awake loops were
    pinned to, from its descendants sampled while it ran."""
    process = subprocess.Popen([sys.executable, "-m", "bench", *argv, "--out", str(out)],
                               cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    handle = psutil.Process(process.pid)
    cpus: set[int] = set()
    deadline = time.monotonic() + 4 * TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        try:
            for child in handle.children(recursive=True):
                if "bench.keepawake" in child.cmdline():
                    cpus.update(child.cpu_affinity())
        except psutil.Error:
            pass
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
    return process.wait(), cpus


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two CPUs")
def test_calibrate_keeps_the_pinned_cpus_awake_unless_told_not_to(tmp_path: Path) -> None:
    quick = ["calibrate", "--rounds", "1", "--duration", "0.5"]
    code, cpus = keepawake_loops_seen(quick, tmp_path / "awake")
    assert code == 0
    pinning = json.loads((tmp_path / "awake" / "meta.json").read_text())["pinning"]
    expected = sorted(pinning["server_cpus"] + pinning["generator_cpus"])
    assert pinning["cpus_kept_awake"] == expected and sorted(cpus) == expected

    code, cpus = keepawake_loops_seen([*quick, "--let-cpus-idle"], tmp_path / "idle")
    assert code == 0
    pinning = json.loads((tmp_path / "idle" / "meta.json").read_text())["pinning"]
    assert pinning["cpus_kept_awake"] == [] and cpus == set()
