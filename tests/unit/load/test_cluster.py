"""--cluster: what it accepts, and what it refuses with one line before anything starts."""

from __future__ import annotations

import pytest

from bench.cli import build_parser, resolve_cells
from bench.errors import UsageError
from bench.load.cluster import MAX_LOCAL_SHARDS, ClusterChoice, parse_cluster


def test_local_n_is_n_shards() -> None:
    assert parse_cluster("--cluster", "local:2") == ClusterChoice(local_shards=2)
    assert parse_cluster("--cluster", f"local:{MAX_LOCAL_SHARDS}").local_shards == MAX_LOCAL_SHARDS


def test_a_scheduler_on_loopback_or_an_allowed_network_is_its_address() -> None:
    assert parse_cluster("--cluster", "tcp://127.0.0.1:8786") == ClusterChoice(
        scheduler="tcp://127.0.0.1:8786"
    )
    assert parse_cluster("--cluster", "tcp://[::1]:8786").scheduler == "tcp://[::1]:8786"
    allowed = parse_cluster("--cluster", "tcp://192.0.2.7:8786", ("192.0.2.0/24",))
    assert allowed.scheduler == "tcp://192.0.2.7:8786"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("local:0", "from 1 to"),
        (f"local:{MAX_LOCAL_SHARDS + 1}", "from 1 to"),
        ("local", "expected local:N"),
        ("local:two", "expected local:N"),
        ("ssh:2", "expected local:N.*or tcp://HOST:PORT"),
        ("tcp://192.0.2.7:8786", "not a loopback address.*--allow-network CIDR"),
        ("tcp://127.0.0.1", "expected tcp://HOST:PORT"),
        ("tcp://127.0.0.1:8786/x", "expected tcp://HOST:PORT"),
        ("tls://127.0.0.1:8786", "TLS to a Dask scheduler is not supported"),
    ],
)
def test_bad_values_are_one_line(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_cluster("--cluster", value)


def cells_for(*options: str) -> list:
    argv = ["run", "--servers", "websockets,socketio-aiohttp", "--duration", "2", *options]
    return resolve_cells(build_parser().parse_args(argv))


def test_every_cell_gets_the_shards_and_is_not_time_sliced() -> None:
    cells = cells_for("--mode", "closed", "--cluster", "local:3")
    assert [(c.cluster, c.workers, c.slice_s) for c in cells] == [("local:3", 3, 0.0)] * 2
    assert {c.cluster for c in cells_for("--mode", "closed")} == {""}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--mode", "closed", "--cluster", "local:2", "--workers", "3"), "leave out --workers"),
        (
            ("--mode", "fanout", "--rate", "100", "--cluster", "local:2"),
            "closed and open modes only",
        ),
        (("--mode", "memory", "--cluster", "local:2"), "closed and open modes only"),
    ],
)
def test_what_cannot_run_as_shards_is_refused(options: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        cells_for(*options)
