"""Every server listens with the contract's accept queue (FAIRNESS.listen_backlog): a connect
storm that outruns a short queue loses SYNs, each lost one costing its client a 1-s
retransmission, so the queue must not differ from one server to the next. Linux shows a
listening socket's backlog as its Send-Q (ss -ltn)."""

from __future__ import annotations

import subprocess

import pytest

from servers.common import FAIRNESS
from tests.conftest import running_server
from tests.integration.test_servers import ALL_SERVERS
from tests.node import NODE_SERVERS, require_node, running_node_server

pytestmark = pytest.mark.integration


def listen_backlog(port: int) -> int:
    """The Send-Q of the socket listening on ``port`` (its backlog, capped by somaxconn)."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=10,
        check=True,
    ).stdout  # fmt: skip
    (line,) = [line for line in out.splitlines() if line.strip()]
    return int(line.split()[2])


def expected() -> int:
    with open("/proc/sys/net/core/somaxconn") as stream:
        return min(FAIRNESS.listen_backlog, int(stream.read()))


@pytest.mark.parametrize("name", ALL_SERVERS)
def test_a_python_server_listens_with_the_contracts_backlog(name: str) -> None:
    with running_server(name, "uvloop") as server:
        assert listen_backlog(server.port) == expected()


@pytest.mark.parametrize("name", NODE_SERVERS)
def test_a_node_server_listens_with_the_contracts_backlog(name: str) -> None:
    require_node()
    with running_node_server(name) as server:
        assert listen_backlog(server.port) == expected()
