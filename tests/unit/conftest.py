"""Keeps the unit tier honest: a unit test that opens a network socket or starts a process
fails, naming what it attempted. Tests that need either belong in tests/integration/.

The guard covers each unit test's setup, call and teardown, so also the module-scoped fixtures
it uses, which a function-scoped autouse fixture would only see after they had run. It is
installed once, at import, and does nothing outside a unit test (the integration tests share
the session under `make test`): an audit hook cannot be removed, and a patch that another
fixture monkeypatches over would be restored to whatever was in place when it patched.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing.process
import socket
import sys
from collections.abc import Callable, Generator
from typing import Any

import pytest
import uvloop

_NETWORK_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})

# CPython's audit events catch what a monkeypatch misses: a module that imported Popen or
# socket by name, a socket made from C through Python's socket type.
_PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.system"}
)
_WATCHED_EVENTS = _PROCESS_EVENTS | {"socket.__new__"}

# What the audit events do not see: uvloop connects, listens and spawns in libuv, and
# multiprocessing's spawn and forkserver start their children without an audited call.
_GUARDED_METHODS: list[tuple[type[Any], str, str]] = [
    *[
        (loop_class, name, what)
        for loop_class in (asyncio.BaseEventLoop, uvloop.Loop)
        for name, what in [
            ("create_connection", "opened a network connection (loop.create_connection)"),
            ("create_server", "listened on a network socket (loop.create_server)"),
            ("create_datagram_endpoint", "opened a UDP socket (loop.create_datagram_endpoint)"),
            ("subprocess_exec", "started a process (loop.subprocess_exec)"),
            ("subprocess_shell", "started a process (loop.subprocess_shell)"),
        ]
    ],
    (
        multiprocessing.process.BaseProcess,
        "start",
        "started a process (multiprocessing Process.start)",
    ),
]


class ForbiddenInUnitTest(Exception):
    """Raised where a unit test opens a network socket or starts a process."""


# What the unit test now running attempted; None outside a unit test.
_attempts: list[str] | None = None


def _forbid(attempt: str) -> None:
    if _attempts is None:
        return
    _attempts.append(attempt)
    raise ForbiddenInUnitTest(
        f"a unit test {attempt}; unit tests open no network socket and start no process, "
        "so this test belongs in tests/integration/"
    )


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _attempts is None or event not in _WATCHED_EVENTS:
        return
    if event == "socket.__new__":
        # AF_UNIX stays allowed: every asyncio event loop makes a socketpair for its self-pipe.
        if args[1] in _NETWORK_FAMILIES:
            _forbid(f"opened a network socket ({socket.AddressFamily(args[1]).name})")
    else:
        # The command: Popen's and posix_spawn's argument list, exec's path, system's string.
        if event in ("subprocess.Popen", "os.posix_spawn"):
            command = args[1]
        else:
            command = args[0] if args else None
        described = f"{event} {command!r}"[:160] if command else event
        _forbid(f"started a process ({described})")


def _guarded(original: Callable[..., Any], what: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _forbid(what)
        return original(*args, **kwargs)

    return guarded


sys.addaudithook(_audit)
for _owner, _name, _what in _GUARDED_METHODS:
    setattr(_owner, _name, _guarded(getattr(_owner, _name), _what))


def _guard_phase() -> Generator[None, object, object]:
    """Runs one phase of a unit test with the guard on. The attempt itself raises
    ForbiddenInUnitTest; if the code under test caught that, the phase fails here instead."""
    global _attempts
    attempts: list[str] = []
    _attempts = attempts
    try:
        result = yield
    finally:
        _attempts = None
    if attempts:
        pytest.fail(
            "a unit test may open no network socket and start no process, but this one "
            + "; ".join(dict.fromkeys(attempts))
            + " (and caught the error): move it to tests/integration/",
            pytrace=False,
        )
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guard_phase())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guard_phase())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guard_phase())
