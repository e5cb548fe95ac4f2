"""servers.common.settle_malloc: glibc's thresholds fixed, so a 256 KiB read buffer (asyncio's)
comes from the heap in every server process, not from mmap by the chance of its history.

Each case runs in a fresh interpreter: glibc's state is per process and this one's is whatever
the test session's imports left. (Another C library left alone:
tests/unit/test_servers_malloc.py.)"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from servers.common import FAIRNESS
from tests.conftest import REPO_ROOT, TIME_FACTOR

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's"
    ),
]

# asyncio's read size plus a bytes object's header: what each recv() asks malloc for.
READ_BUFFER_BYTES = 256 * 1024 + 33

# Whether malloc serves a block of ``size`` bytes with mmap: glibc marks such a chunk with bit 1
# (IS_MMAPPED) of the size word just before the pointer. The block is shrunk before it is freed,
# as CPython's bytes resize does, so the probe itself never raises glibc's dynamic threshold.
PROBE = """
import ctypes, json, sys
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.realloc.restype = ctypes.c_void_p
libc.realloc.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
libc.free.argtypes = (ctypes.c_void_p,)

def mmapped(size):
    block = libc.malloc(size)
    flag = bool(ctypes.c_size_t.from_address(block - ctypes.sizeof(ctypes.c_size_t)).value & 2)
    libc.free(libc.realloc(block, 16))
    return flag

size = int(sys.argv[1])
before = mmapped(size)
from servers.common import settle_malloc
settled = settle_malloc(*map(int, sys.argv[2:]))
print(json.dumps({"before": before, "settled": settled, "after": mmapped(size)}))
"""


def probe(size: int, *thresholds: int) -> dict[str, bool]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(size), *map(str, thresholds)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=30 * TIME_FACTOR,
        check=True,
    )
    result: dict[str, bool] = json.loads(done.stdout)
    return result


def test_a_fresh_process_serves_the_read_buffer_with_mmap_until_settled() -> None:
    result = probe(READ_BUFFER_BYTES)
    # The stock state the contract removes (if glibc ever starts above 256 KiB, this case says
    # the setting has become moot rather than passing silently).
    assert result["before"] is True
    assert result["settled"] is True
    assert result["after"] is False


def test_the_contract_thresholds_cover_the_largest_message() -> None:
    assert FAIRNESS.malloc_mmap_threshold_bytes > FAIRNESS.max_message_bytes
    # glibc's own rule when it raises the mmap threshold: trim at twice it.
    assert FAIRNESS.malloc_trim_threshold_bytes == 2 * FAIRNESS.malloc_mmap_threshold_bytes
    result = probe(FAIRNESS.max_message_bytes + 64)
    assert result["after"] is False
