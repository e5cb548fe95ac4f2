"""Wake the event loop at an exact CLOCK_MONOTONIC time, for open-loop pacing.

asyncio's and uvloop's timers work in whole milliseconds (uvloop returns at once from sleeps
under 0.5 ms and sleeps about 1.15 ms for 0.9 ms), so a paced sender either spins on the CPU or
sends up to a millisecond late, which then shows in every open-loop latency. A Linux timerfd
armed at an absolute time wakes the loop within microseconds and costs nothing while waiting.
Python gains ``os.timerfd_create`` only in 3.13, and no maintained package wraps timerfd, so for
3.11/3.12 the two libc calls are made through ctypes. Elsewhere (not Linux) the alarm falls back
to ``asyncio.sleep`` and says so in ``precise``.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
from time import monotonic_ns

CLOCK_MONOTONIC = 1
TFD_TIMER_ABSTIME = 1
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = os.O_CLOEXEC
NS_PER_S = 1_000_000_000


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Timerfd:
    """The two timerfd calls the alarm needs, from ``os`` (3.13+) or libc."""

    def __init__(self) -> None:
        self._native = hasattr(os, "timerfd_create")
        if self._native:
            self.fd = os.timerfd_create(  # type: ignore[attr-defined,unused-ignore]
                CLOCK_MONOTONIC, flags=TFD_NONBLOCK | TFD_CLOEXEC
            )
            return
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.fd = int(fd)
        self._spec = _Itimerspec()

    def arm_at(self, t_ns: int) -> None:
        if self._native:
            os.timerfd_settime_ns(  # type: ignore[attr-defined,unused-ignore]
                self.fd, flags=TFD_TIMER_ABSTIME, initial=t_ns
            )
            return
        self._spec.it_value.tv_sec, self._spec.it_value.tv_nsec = divmod(t_ns, NS_PER_S)
        if self._libc.timerfd_settime(self.fd, TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None):
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")


async def sleep_until(t_ns: int) -> None:
    """Return at monotonic time ``t_ns`` or after, never before: uvloop's millisecond timers
    return up to half a millisecond early, and a message sent then falls before a window that
    opens at ``t_ns``. The last stretch is spent yielding to the loop (at most about 1 ms)."""
    await asyncio.sleep(max(0.0, (t_ns - monotonic_ns()) / NS_PER_S))
    while monotonic_ns() < t_ns:
        await asyncio.sleep(0)


class Alarm:
    """``await alarm.sleep_until(t_ns)``: return at monotonic time ``t_ns`` (or just after)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._timer: _Timerfd | None = None
        if sys.platform.startswith("linux"):
            try:
                self._timer = _Timerfd()
            except (OSError, AttributeError):
                self._timer = None
        if self._timer is not None:
            self._loop.add_reader(self._timer.fd, self._fired)

    @property
    def precise(self) -> bool:
        return self._timer is not None

    async def sleep_until(self, t_ns: int) -> None:
        if self._timer is None:
            await sleep_until(t_ns)
            return
        self._waiter = self._loop.create_future()
        self._timer.arm_at(t_ns)
        await self._waiter

    def _fired(self) -> None:
        assert self._timer is not None
        try:
            os.read(self._timer.fd, 8)
        except BlockingIOError:
            return
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        if self._timer is not None:
            self._loop.remove_reader(self._timer.fd)
            os.close(self._timer.fd)
            self._timer = None
