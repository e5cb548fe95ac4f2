"""Scale-out: how a fan-out connection reads which server process it is on."""

from __future__ import annotations

import pytest

from bench.load.fanout_worker import announced_worker
from servers.common import worker_announcement


@pytest.mark.parametrize("worker", [0, 1, 7, 1023])
def test_a_raw_servers_announcement_names_its_process(worker: int) -> None:
    assert announced_worker(worker_announcement(worker), socketio=False) == worker


@pytest.mark.parametrize("worker", [0, 3])
def test_a_socketio_acknowledgement_names_its_process(worker: int) -> None:
    assert announced_worker(f"431[{worker}]".encode(), socketio=True) == worker


@pytest.mark.parametrize(
    ("data", "socketio"),
    [(b"worker x", False), (b"worker ", False), (b"0000000000hello", False),
     (b"431[true]", True), (b'431["0"]', True), (b"42[1]", True), (b"worker 1", True)],
)  # fmt: skip
def test_anything_else_is_no_announcement(data: bytes, socketio: bool) -> None:
    assert announced_worker(data, socketio) is None
