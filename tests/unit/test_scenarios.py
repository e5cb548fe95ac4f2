from __future__ import annotations

import pytest

from bench.errors import UsageError
from bench.scenarios import SUITES, expand, load_suite, parse_suite

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


def test_default_suite_fits_its_budget() -> None:
    # make bench: at most 10 minutes; about 4 s of set-up per cell on top of its window.
    suite = load_suite("default")
    cells = expand(suite.entries, suite.repeat)
    assert sum(c.warmup_s + c.duration_s + 4 for c in cells) <= 600


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
    ],
)
def test_bad_suites_are_refused(change: tuple[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_suite(VALID.replace(*change), "t")
