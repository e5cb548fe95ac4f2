"""--server-workers and --redis-url: which cells get several server processes, and what is
refused (one line, exit 2) before anything starts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.catalog import SERVERS
from bench.cli import build_parser, resolve_cells, runnable
from bench.errors import UsageError
from bench.scenarios import MAX_SERVER_WORKERS, entries_for_scenario, expand


def cells_for(argv: list[str]) -> list:
    return resolve_cells(build_parser().parse_args(argv))


def test_server_workers_applies_to_every_cell_and_stops_slicing() -> None:
    cells = cells_for(["run", "--servers", "websockets,socketio-aiohttp", "--mode", "closed",
                       "--server-workers", "3", "--duration", "2"])  # fmt: skip
    assert [(c.server_workers, c.broker, c.slice_s) for c in cells] == [(3, "redis", 0.0)] * 2
    one = cells_for(["run", "--servers", "websockets", "--mode", "closed", "--duration", "2"])
    assert (one[0].server_workers, one[0].broker) == (1, "")


def test_redis_url_goes_to_the_cells_with_several_processes() -> None:
    url = "redis://127.0.0.1:6399/0"
    cells = cells_for(["run", "--scenario", "scaleout", "--servers", "websockets",
                       "--redis-url", url])  # fmt: skip
    assert {(c.server_workers, c.redis_url) for c in cells} == {(2, url), (1, "")}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--server-workers", "0"], "from 1 to"),
        (["--server-workers", str(MAX_SERVER_WORKERS + 1)], "from 1 to"),
        (["--server-workers", "2", "--mode", "memory"], "memory mode measures one server"),
        (["--server-workers", "2", "--mode", "connect", "--transport", "polling"],
         "sticky sessions"),
        (["--redis-url", "redis://127.0.0.1:6379/0"], "goes with --server-workers 2"),
        (["--server-workers", "2", "--redis-url", "redis://10.1.2.3:6379/0"],
         "not a loopback address"),
        (["--server-workers", "2", "--redis-url", "http://127.0.0.1:6379/"], "redis://HOST"),
        (["--server-workers", "2", "--redis-url", "redis://127.0.0.1:6379/x"], "a number"),
    ],
)  # fmt: skip
def test_bad_scale_out_input_is_one_line(extra: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        cells_for(["run", "--servers", "socketio-aiohttp", "--duration", "2", *extra])


def test_server_workers_is_for_the_harnesss_own_servers() -> None:
    with pytest.raises(UsageError, match="not a --target or --server-cmd"):
        cells_for(["run", "--target", "ws://127.0.0.1:9/", "--protocol", "raw",
                   "--server-workers", "2"])  # fmt: skip


def test_servers_that_do_not_scale_out_are_skipped_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import cli

    monkeypatch.setattr(cli, "redis_missing_reason", lambda: "")  # as where it is installed
    # As where Node.js and its packages are installed (a fresh clone's unit tests run first).
    monkeypatch.setattr(type(cli.SERVERS["node-ws"]), "missing", lambda self: None)
    # A server whose record says it does not run as several processes.
    monkeypatch.setitem(cli.SERVERS, "node-ws", replace(cli.SERVERS["node-ws"], scales_out=False))
    cells = cells_for(["run", "--servers", "node-ws,aiohttp", "--mode", "closed",
                       "--server-workers", "2", "--duration", "2"])  # fmt: skip
    kept = runnable(cells)
    assert [c.server for c in kept] == ["aiohttp"]
    err = capsys.readouterr().err
    assert "skipping node-ws's 1 cell(s) with several server processes" in err


def test_without_redis_server_the_cells_that_need_it_are_skipped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import cli

    monkeypatch.setattr(cli, "redis_missing_reason", lambda: "redis-server is not installed "
                        "(apt-get install redis-server)")  # fmt: skip
    cells = cells_for(["run", "--servers", "aiohttp", "--mode", "closed", "--duration", "2",
                       "--server-workers", "2"])  # fmt: skip
    with pytest.raises(UsageError, match="apt-get install redis-server"):
        runnable(cells)
    assert "skipping 1 cell(s) with several server processes" in capsys.readouterr().err
    # A Redis the user names needs no redis-server here.
    url = "redis://127.0.0.1:6399/0"
    named = cells_for(["run", "--servers", "aiohttp", "--mode", "closed", "--duration", "2",
                       "--server-workers", "2", "--redis-url", url])  # fmt: skip
    assert runnable(named) == named


def test_the_scaleout_scenario_has_fanout_at_two_processes_and_echo_at_one_and_two() -> None:
    cells = expand(entries_for_scenario("scaleout"), 1)
    fanout = {(c.server, c.server_workers) for c in cells if c.mode == "fanout"}
    echo = {(c.server, c.server_workers) for c in cells if c.mode == "closed"}
    servers = {name for name, info in SERVERS.items() if info.scales_out}
    assert {"websockets", "node-socketio"} <= servers  # Python's and Node's
    assert fanout == {(s, 2) for s in servers}
    assert echo == {(s, n) for s in servers for n in (1, 2)}
    assert all(c.connections == 1000 for c in cells if c.mode == "fanout")


def test_cells_with_several_processes_are_never_time_sliced() -> None:
    from bench.spec import sliceable

    cells = cells_for(["run", "--scenario", "scaleout", "--servers", "websockets,aiohttp",
                       "--slice", "0.1"])  # fmt: skip
    closed = [c for c in cells if c.mode == "closed"]
    assert {(c.server_workers, sliceable(c)) for c in closed} == {(1, True), (2, False)}


def test_broker_fault_needs_the_harnesss_own_broker_and_several_processes() -> None:
    cells = cells_for(["run", "--scenario", "broker-fault", "--servers", "aiohttp"])
    assert [(c.mode, c.server_workers, c.broker_fault) for c in cells] == [("fanout", 2, True)]
    with pytest.raises(UsageError, match="must be the harness's own redis-server"):
        cells_for(["run", "--scenario", "broker-fault", "--redis-url", "redis://127.0.0.1:1/0"])
    with pytest.raises(UsageError, match="needs --server-workers 2 or more"):
        cells_for(["run", "--scenario", "broker-fault", "--server-workers", "1"])


def test_a_suite_entry_with_broker_fault_must_be_a_scale_out_fanout() -> None:
    from bench.scenarios import parse_suite

    entry = ('[[run]]\nscenario = "x"\nservers = ["aiohttp"]\nmode = "closed"\n'
             'duration_s = 1\nserver_workers = 2\nbroker_fault = true\n')  # fmt: skip
    with pytest.raises(UsageError, match="broker_fault applies to fanout mode only"):
        parse_suite(entry, "t")
    fanout = entry.replace('mode = "closed"', 'mode = "fanout"\nrate_msgs_s = 5')
    with pytest.raises(UsageError, match="broker_fault kills the broker"):
        parse_suite(fanout.replace("server_workers = 2", "server_workers = 1"), "t")
