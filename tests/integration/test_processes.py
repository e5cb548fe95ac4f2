"""Child processes of the harness (bench.processes): where they sit among sessions and groups."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from bench.processes import start_process, stop_all

pytestmark = pytest.mark.integration


def test_a_child_has_its_own_process_group_in_the_harness_session() -> None:
    """Its own process group: a Ctrl-C in the terminal (SIGINT to the foreground group) reaches
    the harness only. The harness's session: with autogroup scheduling a session is one
    scheduling group, and an idle-priority loop in a session of its own competes with the
    server as an equal group (it took half the server's core)."""

    async def where() -> tuple[int, int, int]:
        process = await start_process([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            return process.pid, os.getpgid(process.pid), os.getsid(process.pid)
        finally:
            await stop_all()

    pid, group, session = asyncio.run(where())
    assert group == pid != os.getpgid(0)
    assert session == os.getsid(0)
