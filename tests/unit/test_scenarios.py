from __future__ import annotations

from dataclasses import replace

import pytest

from bench.errors import UsageError
from bench.load.slices import SliceSchedule
from bench.scenarios import DEFAULT_SLICE_S, SUITES, expand, load_suite, parse_suite
from bench.spec import RunSpec, run_groups

VALID = """
name = "t"
[[run]]
scenario = "echo"
servers = ["aiohttp", "websockets"]
loops = ["uvloop", "asyncio"]
mode = "closed"
payload_bytes = [32, 64]
duration_s = 1
"""


def test_shipped_suites_load_and_cover_every_server() -> None:
    for name in SUITES:
        suite = load_suite(name)
        cells = expand(suite.entries, suite.repeat)
        assert {c.server for c in cells} == {
            "websockets",
            "aiohttp",
            "socketio-aiohttp",
            "socketio-asgi",
        }


def test_quick_suite_fits_its_budget() -> None:
    # make bench-quick must finish within 60 s: measured windows leave room for start-up.
    cells = expand(load_suite("quick").entries, 1)
    assert sum(c.warmup_s + c.duration_s for c in cells) <= 30


# Measured on the 2-core machine (wsbench run --scenario payload): a time-sliced group of four
# servers took its span plus about 3 s (start, probe, spawn, stop), and each calibration 5 s.
SETUP_S = 3.0
CALIBRATION_S = 6.0
# Connect storms (wsbench run --scenario connect): a cell took its storm plus about 1 s, and
# the slowest server set up about 700 connections a second at full speed.
CONNECT_SETUP_S = 1.5
FULL_SPEED_CONNS_S = 700.0
# Fan-out and memory cells open their connections first, at about these many a second (the
# slowest server, Socket.IO; memory: 5,000 in 12-15 s in make bench on 2026-11-22).
OPEN_CONNS_S = 700.0
MEMORY_CONNS_S = 400.0
# Reconnect cells: the library clients connect at about this many a second; the restart.
LIBRARY_CONNS_S = 300.0
RESTART_S = 1.0


def wall_time_s(cells: list[RunSpec]) -> float:
    total = CALIBRATION_S * len({(c.payload_bytes, c.payload_kind) for c in cells})
    for group in run_groups(cells):
        first = group[0]
        if first.mode == "connect":
            rate = first.rate_conns_s or FULL_SPEED_CONNS_S
            total += first.connections / rate + CONNECT_SETUP_S
        elif first.mode == "fanout":
            total += first.connections / OPEN_CONNS_S + first.warmup_s + first.duration_s
            total += CONNECT_SETUP_S
        elif first.mode == "reconnect":
            total += first.connections / LIBRARY_CONNS_S + first.warmup_s + first.duration_s
            total += CONNECT_SETUP_S + RESTART_S
        elif first.mode == "memory":
            held_s = len(first.memory_steps) * (first.warmup_s + first.duration_s)
            total += first.connections / MEMORY_CONNS_S + held_s + CONNECT_SETUP_S
        elif len(group) > 1:
            schedule = SliceSchedule.plan(
                0, len(group), first.slice_s, first.warmup_s, first.duration_s
            )
            total += schedule.span_s + SETUP_S
        else:
            total += first.warmup_s + first.duration_s + SETUP_S
    return total


def test_default_suite_fits_its_budget() -> None:
    # make bench: at most 10 minutes, with half a minute to spare for a slow day. On a fresh
    # clone (2026-11-22) it took 9 min 21 s (561 s) where this model says 561 s.
    suite = load_suite("default")
    assert wall_time_s(expand(suite.entries, suite.repeat)) <= 570


def test_closed_loop_cells_are_time_sliced_by_default_and_open_loop_never() -> None:
    suite = load_suite("default")
    cells = expand(suite.entries, suite.repeat)
    assert {c.slice_s for c in cells if c.mode == "closed"} == {DEFAULT_SLICE_S}
    assert {c.slice_s for c in cells if c.mode == "open"} == {0.0}
    groups = run_groups(cells)
    # Closed loop over WebSocket: one group per pass and cell, holding the four servers;
    # open-loop and polling cells run alone.
    sliced = [g for g in groups if g[0].mode == "closed" and g[0].transport == "websocket"]
    assert sliced and all(len(g) == 4 and len({c.server for c in g}) == 4 for g in sliced)
    assert all(len(g) == 1 for g in groups if g[0].mode == "open")
    assert all(len(g) == 1 for g in groups if g[0].transport == "polling")
    assert [c for g in groups for c in g] == cells  # order kept


def test_only_cells_differing_in_their_server_share_a_run() -> None:
    base = expand(parse_suite(VALID, "t").entries, repeat=1)[0]
    other_loop = replace(base, server="websockets", protocol="raw", loop="asyncio")
    library = replace(base, server="websockets", protocol="raw", client="library")
    twin = replace(base, server="websockets", protocol="raw")
    assert [len(g) for g in run_groups([base, other_loop])] == [1, 1]
    assert [len(g) for g in run_groups([base, library])] == [1, 1]
    assert [len(g) for g in run_groups([base, twin, base])] == [2, 1]  # a server once a run
    unsliced = [replace(base, slice_s=0), replace(twin, slice_s=0)]
    assert [len(g) for g in run_groups(unsliced)] == [1, 1]


def test_product_expansion() -> None:
    cells = expand(parse_suite(VALID, "t").entries, repeat=1)
    assert len(cells) == 8
    assert [c.server for c in cells[:2]] == ["aiohttp", "websockets"]  # servers vary fastest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('mode = "closed"', 'mode = "closed"\nbogus = 1'), "unknown key 'bogus'"),
        (("duration_s = 1", "duration_s = 0"), "duration_s must be positive"),
        (("duration_s = 1", 'duration_s = "1"'), "wrong type"),
        (('"websockets"]', '"nginx"]'), "unknown server 'nginx'"),
        (('mode = "closed"', 'mode = "open"'), "needs rate_msgs_s"),
        (("[32, 64]", "[32, 4]"), "outside"),
        (('name = "t"', 'name = "t"\nextra = true'), "unknown key 'extra'"),
        (("[[run]]", "[[run]"), "malformed TOML"),
        (("duration_s = 1", "duration_s = 1\nslice_s = 0.01"), "0 \\(no slicing\\) or at least"),
        (("duration_s = 1", "duration_s = 1\nslice_s = -1"), "slice_s must be zero or more"),
        (("duration_s = 1", 'duration_s = 1\ntransport = "carrier-pigeon"'), "transport must be"),
        (("duration_s = 1", 'duration_s = 1\ntransport = "polling"'), "raw servers lack it"),
        (('mode = "closed"', 'mode = "open"\nrate_msgs_s = 9\nslice_s = 0.5'), "closed mode only"),
        (('mode = "closed"', 'mode = "closed"\nrate_conns_s = 9'), "connect mode only"),
        (('mode = "closed"', 'mode = "connect"\nrate_conns_s = -1'), "zero or more"),
        (('mode = "closed"', 'mode = "connect"\ninflight = 2'), "one message per connection"),
        (
            ('mode = "closed"', 'mode = "connect"\nrate_msgs_s = 9'),
            "open, fanout and reconnect modes only",
        ),
        (('mode = "closed"', 'mode = "fanout"'), "fanout mode needs rate_msgs_s"),
        (('mode = "closed"', 'mode = "fanout"\nrate_msgs_s = 9\nworkers = 2'), "one worker"),
        (('mode = "closed"', 'mode = "fanout"\nrate_msgs_s = 9\ninflight = 2'), "on a schedule"),
        (
            ('mode = "closed"', 'mode = "fanout"\nrate_msgs_s = 9\npayload_kind = "binary"'),
            "text messages",
        ),
        (('mode = "closed"', 'mode = "connect"\ntransport = "polling-upgrade"'), "Socket.IO"),
        (("duration_s = 1", 'duration_s = 1\ntransport = "polling-upgrade"'), "connect mode"),
        (('mode = "closed"', 'mode = "teleport"'), "mode must be one of"),
        (('mode = "closed"', 'mode = "memory"'), "memory mode, and only memory mode"),
        (('mode = "closed"', 'mode = "closed"\nslow_share = 0.1'), "fanout mode only"),
        (('mode = "closed"', 'mode = "fanout"\nrate_msgs_s = 9\nslow_share = 1'), "up to"),
        (('mode = "closed"', 'mode = "closed"\nmemory_steps = [0, 1, 2]'), "only memory mode"),
        (('mode = "closed"', 'mode = "memory"\nmemory_steps = [0, 1000]'), "at least three"),
        (('mode = "closed"', 'mode = "memory"\nmemory_steps = [0, 9, 5]'), "increasing"),
        (
            ('mode = "closed"', 'mode = "memory"\nmemory_steps = [0, 1, 2]\nconnections = 4'),
            "connections are its memory_steps",
        ),
    ],
)
def test_bad_suites_are_refused(change: tuple[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_suite(VALID.replace(*change), "t")


def test_connect_scenario_covers_both_paces_and_socketios_two_paths() -> None:
    suite = load_suite("default")
    cells = [c for c in expand(suite.entries, 1) if c.scenario == "connect"]
    assert {c.mode for c in cells} == {"connect"}
    paths = {(c.server, c.transport) for c in cells}
    assert paths == {
        ("websockets", "websocket"), ("aiohttp", "websocket"),
        ("socketio-aiohttp", "websocket"), ("socketio-asgi", "websocket"),
        ("socketio-aiohttp", "polling-upgrade"), ("socketio-asgi", "polling-upgrade"),
    }  # fmt: skip
    for path in paths:
        paces = {c.rate_conns_s > 0 for c in cells if (c.server, c.transport) == path}
        assert paces == {True, False}  # a fixed rate and full speed
    # Connect cells never share a time-sliced run.
    assert all(len(group) == 1 for group in run_groups(cells))


def test_connect_entries_expand_their_rates() -> None:
    text = VALID.replace('mode = "closed"', 'mode = "connect"\nrate_conns_s = [0, 50]')
    cells = expand(parse_suite(text, "t").entries, repeat=1)
    assert sorted({c.rate_conns_s for c in cells}) == [0.0, 50.0]
    assert {c.slice_s for c in cells} == {0.0}


def test_memory_entries_hold_their_steps_and_the_largest_as_connections() -> None:
    text = VALID.replace('mode = "closed"', 'mode = "memory"\nmemory_steps = [0, 10, 20]')
    cells = expand(parse_suite(text, "t").entries, repeat=1)
    assert {(c.memory_steps, c.connections) for c in cells} == {((0, 10, 20), 20)}


def test_an_entry_may_repeat_fewer_times_than_the_suite() -> None:
    text = VALID + VALID.split('name = "t"', 1)[1].replace(
        'mode = "closed"', 'mode = "closed"\nrepeat = 1'
    )
    entries = parse_suite(text, "t").entries
    cells = expand(entries, repeat=3)
    assert [c.repeat for c in cells].count(1) == 16 and [c.repeat for c in cells].count(3) == 8
    # Passes stay interleaved: every pass-1 cell comes before any pass-2 cell.
    assert [c.repeat for c in cells] == sorted(c.repeat for c in cells)
    assert len(expand(entries, repeat=2, override_entries=True)) == 32
