"""The progress bar: weighted by each cell's planned time, shown on a terminal only."""

from __future__ import annotations

import io

from rich.console import Console

from bench.spec import RunSpec
from bench.suite_run import CELL_OVERHEAD_S, cell_label, planned_s, suite_progress


def spec(**changes: object) -> RunSpec:
    fields: dict[str, object] = {
        "scenario": "echo", "server": "websockets", "protocol": "raw", "loop": "uvloop",
        "mode": "closed",
        "connections": 10, "payload_bytes": 32, "payload_kind": "text", "warmup_s": 0.5,
        "duration_s": 3.0, "repeat": 2,
    }  # fmt: skip
    fields.update(changes)
    return RunSpec(**fields)  # type: ignore[arg-type]


def test_planned_time_is_warmup_plus_window_plus_overhead() -> None:
    assert planned_s(spec()) == 0.5 + 3.0 + CELL_OVERHEAD_S
    assert planned_s(spec(duration_s=30.0)) > planned_s(spec())


def test_the_label_names_the_cell() -> None:
    assert cell_label(spec()) == "echo websockets uvloop closed r2"


def test_quiet_when_not_on_a_terminal() -> None:
    stream = io.StringIO()
    with suite_progress(Console(file=stream, force_terminal=False)) as progress:
        task = progress.add_task("[1/2] echo", total=10.0)
        progress.advance(task, 5.0)
    assert progress.disable
    assert stream.getvalue() == ""


def test_on_a_terminal_it_shows_the_cell_and_the_time_left() -> None:
    stream = io.StringIO()
    output = Console(file=stream, force_terminal=True, width=160)
    with suite_progress(output) as progress:
        task = progress.add_task("[1/2] echo websockets uvloop closed r1", total=10.0)
        progress.advance(task, 5.0)
        progress.refresh()
    assert not progress.disable
    shown = stream.getvalue()
    assert "[1/2] echo websockets uvloop closed r1" in shown
    assert "elapsed" in shown and "left" in shown


def test_a_failure_text_with_brackets_is_printed_as_text() -> None:
    from bench.suite_run import _progress_line

    record = {"server": "aiohttp", "loop": "uvloop", "mode": "closed", "status": "failed",
              "failure": "server exited (status -9; its log ends: [/bold] [red)"}  # fmt: skip
    line = _progress_line(1, 2, record)
    stream = io.StringIO()
    Console(file=stream, width=200).print(line)  # raised MarkupError before escaping
    assert "[/bold] [red)" in stream.getvalue()


def test_a_row_with_several_server_processes_says_how_many_and_the_broker() -> None:
    from bench.suite_run import _progress_line

    record = {"server": "aiohttp", "loop": "uvloop", "mode": "closed", "status": "failed",
              "failure": "x", "server_workers": 2, "broker": "redis"}  # fmt: skip
    assert _progress_line(1, 2, record).startswith(
        "[1/2] aiohttp           uvloop   closed x2 redis"
    )
    one = {**record, "server_workers": 1, "broker": ""}
    assert "x1" not in _progress_line(1, 2, one)
