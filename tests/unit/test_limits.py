from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import UsageError
from bench.limits import RESERVED_FILES, plan_connections, port_range

PORTS = (32768, 60999)  # 28,232 ports, of which 30% are used: 8,469 per address


def test_19000_connections_fit_the_two_core_machine() -> None:
    budget = plan_connections(19_000, 1, 20_000, 20_000, PORTS)
    assert budget.per_worker == [19_000]
    assert budget.source_addresses == ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    # Up to a third of one address's ports, the kernel picks them unaided.
    assert plan_connections(8_469, 1, 20_000, 20_000, PORTS).source_addresses == ()


def test_connections_split_evenly_over_workers() -> None:
    assert plan_connections(10, 3, 20_000, None, PORTS).per_worker == [4, 3, 3]


def test_too_many_for_one_worker_names_the_limit() -> None:
    with pytest.raises(
        UsageError, match=r"need 20,064 open files in one process, but the limit is 20,000"
    ):
        plan_connections(20_000, 1, 20_000, None, PORTS)


def test_too_many_for_the_server_names_its_limit() -> None:
    with pytest.raises(UsageError, match="in the server process, but its limit is 1,024"):
        plan_connections(1_000, 2, 20_000, 1_024, PORTS)
    plan_connections(1_024 - RESERVED_FILES, 1, 20_000, 1_024, PORTS)


def test_several_server_processes_each_hold_their_share_with_a_margin() -> None:
    # 50,000 over 3 processes: 16,667 each, 18,334 with the 10% margin, within 20,000.
    plan_connections(50_000, 3, 20_000, 20_000, PORTS, server_processes=3)
    with pytest.raises(UsageError, match="in each of the server's 2 processes"):
        plan_connections(50_000, 3, 20_000, 20_000, PORTS, server_processes=2)


def test_source_addresses_spread_when_ports_run_out() -> None:
    budget = plan_connections(60_000, 4, 20_000, None, PORTS)
    assert budget.source_addresses == tuple(f"127.0.0.{i}" for i in range(1, 9))


def test_port_range_is_read_or_defaulted(tmp_path: Path) -> None:
    path = tmp_path / "range"
    path.write_text("1024\t65535\n")
    assert port_range(path) == (1024, 65535)
    assert port_range(tmp_path / "missing") == PORTS
