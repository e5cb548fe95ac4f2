"""servers.common.settle_malloc under another C library: glibc's mallopt is not reached for.
(glibc's thresholds in a fresh process: tests/integration/test_servers_malloc.py.)"""

from __future__ import annotations

import pytest

from servers import common


def test_another_c_library_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dlopen(*args: object, **kwargs: object) -> None:
        raise AssertionError("settle_malloc reached for glibc's mallopt under another C library")

    monkeypatch.setattr(common.platform, "libc_ver", lambda: ("musl", "1.2"))
    monkeypatch.setattr(common.ctypes, "CDLL", no_dlopen)
    assert common.settle_malloc() is False
