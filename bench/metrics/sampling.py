"""CPU and memory of the server and the generator workers, sampled with psutil at about 10 Hz.

Samples are kept whole (time, CPU seconds, RSS) so figures for the measurement window are
computed from the samples inside it, and a run's time series can be written out as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import time
from dataclasses import dataclass
from time import monotonic_ns

import psutil

SAMPLE_INTERVAL_S = 0.1


def process_cpu_s(process: psutil.Process) -> float:
    """User + system CPU seconds of the whole process (every thread, live or ended), to the
    nanosecond where the kernel allows it.

    Written by hand because psutil reads /proc/PID/stat, which counts in clock ticks
    (10 ms here): a burst of a few milliseconds, such as a connect storm of 40 handshakes,
    then reads as zero or as a whole tick. Linux exposes each process's scheduler clock to
    clock_gettime() under the id ``(~pid << 3) | 2`` (CPUCLOCK_SCHED, process-wide; the
    encoding glibc's clock_getcpuclockid uses, which Python does not wrap). Elsewhere, or
    if the kernel refuses, psutil's tick-resolution figure is used.
    """
    try:
        return time.clock_gettime((~process.pid << 3) | 2)
    except (OSError, OverflowError):
        if process.status() == psutil.STATUS_ZOMBIE:  # ended: no figure rather than a coarser one
            raise psutil.ZombieProcess(process.pid) from None
        times = process.cpu_times()
        return float(times.user + times.system)


@dataclass(frozen=True)
class Sample:
    t_ns: int
    cpu_s: float  # user + system CPU time since the process started
    rss_bytes: int
    uss_bytes: int = -1  # memory only this process holds; -1 when not sampled


@dataclass(frozen=True)
class WindowUsage:
    cpu_pct: float  # of one core; NaN without two samples in the window
    rss_max_bytes: int
    samples: int

    def per_active(self, active_fraction: float) -> WindowUsage:
        """CPU over the time the process was loaded, when that was ``active_fraction`` of
        the window (time-sliced runs); memory is unchanged."""
        return WindowUsage(self.cpu_pct / active_fraction, self.rss_max_bytes, self.samples)


def summed_usage(usages: list[WindowUsage]) -> WindowUsage:
    """Several processes of one server as one: CPU shares and peak RSS added (the peaks of
    different processes may fall at different moments, so the RSS is an upper bound), the
    fewest samples any had."""
    if len(usages) == 1:
        return usages[0]
    return WindowUsage(
        sum(u.cpu_pct for u in usages),
        sum(u.rss_max_bytes for u in usages),
        min((u.samples for u in usages), default=0),
    )


class ProcessSampler:
    """Samples a set of processes until stopped; ``usage(pid, start, end)`` summarises a window."""

    def __init__(self, pids: dict[str, int], uss_roles: frozenset[str] = frozenset()) -> None:
        """``uss_roles``: processes whose USS is sampled too (it reads /proc/PID/smaps,
        milliseconds for a big process, so only where memory is the measurement)."""
        self.processes = {role: psutil.Process(pid) for role, pid in pids.items()}
        self.uss_roles = uss_roles
        self.samples: dict[str, list[Sample]] = {role: [] for role in pids}
        # Per CPU: seconds the hypervisor gave that CPU's time to someone else (steal).
        self.steal: list[tuple[int, list[float]]] = []
        self._task: asyncio.Task[None] | None = None

    def sample_once(self) -> None:
        now = monotonic_ns()
        per_cpu = psutil.cpu_times(percpu=True)
        self.steal.append((now, [getattr(times, "steal", 0.0) for times in per_cpu]))
        for role, process in self.processes.items():
            try:
                with process.oneshot():
                    cpu_s = process_cpu_s(process)
                    if role in self.uss_roles:
                        full = process.memory_full_info()
                        rss, uss = full.rss, full.uss
                    else:
                        rss, uss = process.memory_info().rss, -1
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            self.samples[role].append(Sample(now, cpu_s, rss, uss))

    async def _run(self) -> None:
        while True:
            self.sample_once()
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample_once()

    def usage(self, role: str, start_ns: int, end_ns: int) -> WindowUsage:
        return window_usage(self.samples.get(role, []), start_ns, end_ns)

    def rss_growth(self, role: str, start_ns: int, end_ns: int) -> float:
        return rss_growth(self.samples.get(role, []), start_ns, end_ns)

    def memory(self, role: str, start_ns: int, end_ns: int) -> tuple[float, float]:
        return window_memory(self.samples.get(role, []), start_ns, end_ns)

    def cpu_seconds_spanning(self, role: str, start_ns: int, end_ns: int) -> float:
        return cpu_seconds_spanning(self.samples.get(role, []), start_ns, end_ns)

    def steal_pct(self, cpus: tuple[int, ...], start_ns: int, end_ns: int) -> float:
        return window_steal_pct(self.steal, cpus, start_ns, end_ns)


def window_steal_pct(
    samples: list[tuple[int, list[float]]], cpus: tuple[int, ...], start_ns: int, end_ns: int
) -> float:
    """Share of the window (%) in which the hypervisor ran something else on ``cpus``
    (their mean); NaN without two samples inside or without CPUs. On a shared VM this is
    time a pinned server or generator was runnable but not running."""
    inside = [s for s in samples if start_ns <= s[0] <= end_ns]
    if len(inside) < 2 or not cpus or inside[-1][0] == inside[0][0]:
        return float("nan")
    (t0, first), (t1, last) = inside[0], inside[-1]
    stolen_s = sum(last[cpu] - first[cpu] for cpu in cpus) / len(cpus)
    return 100.0 * stolen_s / ((t1 - t0) / 1e9)


def window_usage(samples: list[Sample], start_ns: int, end_ns: int) -> WindowUsage:
    """CPU share between the first and last sample inside [start, end]; peak RSS there."""
    inside = [s for s in samples if start_ns <= s.t_ns <= end_ns]
    if not inside:
        return WindowUsage(float("nan"), 0, 0)
    rss_max = max(s.rss_bytes for s in inside)
    if len(inside) < 2 or inside[-1].t_ns == inside[0].t_ns:
        return WindowUsage(float("nan"), rss_max, len(inside))
    elapsed_s = (inside[-1].t_ns - inside[0].t_ns) / 1e9
    cpu_pct = 100.0 * (inside[-1].cpu_s - inside[0].cpu_s) / elapsed_s
    return WindowUsage(cpu_pct, rss_max, len(inside))


def cpu_seconds_spanning(samples: list[Sample], start_ns: int, end_ns: int) -> float:
    """CPU seconds between the last sample at or before ``start_ns`` and the first at or
    after ``end_ns``: all the work of a burst shorter than the sampling interval (a connect
    storm), plus whatever the process did around it. NaN without such samples."""
    before = [s for s in samples if s.t_ns <= start_ns]
    after = [s for s in samples if s.t_ns >= end_ns]
    if not before or not after:
        return float("nan")
    return after[0].cpu_s - before[-1].cpu_s


def window_memory(samples: list[Sample], start_ns: int, end_ns: int) -> tuple[float, float]:
    """Median RSS and USS (bytes) of the samples inside [start, end]; NaN where none (USS: or
    not sampled)."""
    inside = [s for s in samples if start_ns <= s.t_ns <= end_ns]
    rss = [float(s.rss_bytes) for s in inside]
    uss = [float(s.uss_bytes) for s in inside if s.uss_bytes >= 0]
    return (
        statistics.median(rss) if rss else math.nan,
        statistics.median(uss) if uss else math.nan,
    )


def rss_growth(samples: list[Sample], start_ns: int, end_ns: int) -> float:
    """How far RSS rose in [start, end] above its first sample there (bytes; NaN without
    samples): what a server buffered for clients that could not keep up."""
    inside = [s.rss_bytes for s in samples if start_ns <= s.t_ns <= end_ns]
    return float(max(inside) - inside[0]) if inside else math.nan
