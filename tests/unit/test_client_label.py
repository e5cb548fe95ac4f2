"""The ``client`` a row carries is the stack that ran it, for every mode (bench.load.stacks)."""

from __future__ import annotations

import pytest

from bench.cli import build_parser, resolve_cells
from bench.load.stacks import FAST, LIBRARY, client_stack
from bench.results import row as build_row
from bench.runner import RunResult
from bench.spec import RunSpec

# The worker entries built on each stack: the generator's own clients, or the libraries'.
FAST_MODULES = {
    "bench.load.worker", "bench.load.polling_worker", "bench.load.connect_worker",
    "bench.load.fanout_worker", "bench.load.memory_worker", "bench.load.instructions_worker",
}  # fmt: skip
LIBRARY_MODULES = {"bench.load.library_worker", "bench.load.reconnect_worker"}


def cells(argv: list[str]) -> list[RunSpec]:
    return resolve_cells(build_parser().parse_args(argv))


def test_every_mode_of_the_default_suite_with_library_clients_says_which_client_ran() -> None:
    seen: dict[tuple[str, str], set[str]] = {}
    for cell in cells(["run", "--suite", "default", "--client", "library"]):
        seen.setdefault((cell.mode, cell.transport), set()).add(cell.client)
        modules = LIBRARY_MODULES if cell.client == LIBRARY else FAST_MODULES
        assert cell.worker_module in modules, cell
    assert seen == {
        ("closed", "websocket"): {LIBRARY},
        ("open", "websocket"): {LIBRARY},
        ("closed", "polling"): {FAST},  # the generator's own HTTP/1.1 client
        ("connect", "websocket"): {FAST},
        ("connect", "polling-upgrade"): {FAST},
        ("fanout", "websocket"): {FAST},
        ("memory", "websocket"): {FAST},
        ("instructions", "websocket"): {FAST},
        ("reconnect", "websocket"): {LIBRARY},  # the libraries' reconnecting clients
    }


def test_the_fast_client_default_labels_reconnect_rows_library() -> None:
    for cell in cells(["run", "--suite", "default"]):
        expected = LIBRARY if cell.mode == "reconnect" else FAST
        assert cell.client == expected, cell


@pytest.mark.parametrize(
    ("mode", "transport", "requested", "client", "module"),
    [
        ("closed", "websocket", FAST, FAST, "bench.load.worker"),
        ("closed", "websocket", LIBRARY, LIBRARY, "bench.load.library_worker"),
        ("open", "websocket", LIBRARY, LIBRARY, "bench.load.library_worker"),
        ("capacity", "websocket", LIBRARY, LIBRARY, "bench.load.library_worker"),
        ("closed", "polling", LIBRARY, FAST, "bench.load.polling_worker"),
        ("connect", "websocket", LIBRARY, FAST, "bench.load.connect_worker"),
        ("fanout", "websocket", LIBRARY, FAST, "bench.load.fanout_worker"),
        ("memory", "websocket", LIBRARY, FAST, "bench.load.memory_worker"),
        ("reconnect", "websocket", FAST, LIBRARY, "bench.load.reconnect_worker"),
    ],
)
def test_one_function_gives_both_the_worker_and_the_label(
    mode: str, transport: str, requested: str, client: str, module: str
) -> None:
    stack = client_stack(mode, transport, requested)
    assert (stack.client, stack.module) == (client, module)
    cell = RunSpec("s", "aiohttp", "raw", "uvloop", mode, 10, 32, "text", 0.0, 1.0,  # type: ignore[arg-type]
                   transport=transport, client=requested)  # fmt: skip
    assert (cell.client, cell.worker_module) == (client, module)


def test_the_row_carries_the_cells_client() -> None:
    cell = RunSpec("memory", "aiohttp", "raw", "uvloop", "memory", 20, 32, "text", 1.0, 1.0,
                   memory_steps=(0, 10, 20), client=LIBRARY)  # fmt: skip
    row = build_row(RunResult(cell, "r1", "2026-12-01T00:00:00+00:00"))
    assert row["client"] == FAST


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mode", "memory", "--client", "library"], "--mode memory runs on the fast client"),
        (["--mode", "connect", "--client", "library"], "--mode connect runs on the fast client"),
        (["--mode", "fanout", "--rate", "10", "--client", "library"], "fanout runs on the fast"),
        (["--mode", "reconnect", "--rate", "10", "--client", "fast"], "on the library client"),
        (["--transport", "polling", "--servers", "socketio-asgi", "--client", "library"],
         "--transport polling runs on the fast client"),
    ],
)  # fmt: skip
def test_asking_an_ad_hoc_mode_for_a_client_it_lacks_is_refused(
    argv: list[str], message: str
) -> None:
    from bench.errors import UsageError

    with pytest.raises(UsageError, match=message):
        cells(["run", *argv])
