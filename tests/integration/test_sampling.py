"""Process sampling of a real child process. (The window arithmetic and this process's own
clock: tests/unit/metrics/test_sampling.py.)"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from bench.metrics.sampling import process_cpu_s

pytestmark = pytest.mark.integration


def test_process_cpu_of_another_process_agrees_with_its_tick_count() -> None:
    busy = (
        "import time\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < 0.3: pass\n"
        "time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", busy])
    try:
        process = psutil.Process(child.pid)
        deadline = time.monotonic() + 20
        while process_cpu_s(process) < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        times = process.cpu_times()
        assert process_cpu_s(process) == pytest.approx(times.user + times.system, abs=0.03)
        assert process_cpu_s(process) >= 0.3
    finally:
        child.kill()
        child.wait(timeout=10)
