"""Values beyond what makes sense are refused before anything starts; a run's planned time is
known up front, and a long one needs --allow-long-run; scenarios run against a --target where
they can."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from bench.cli import MAX_UNCONFIRMED_S, build_parser, main, resolve_cells
from bench.errors import EXIT_USAGE, UsageError
from bench.plan_time import format_duration, planned_run_s
from bench.scenarios import MAX_INFLIGHT, check_inflight, expand, load_suite
from bench.spec import RunSpec

TARGET = ["--target", "http://127.0.0.1:9", "--server-pid", str(os.getpid())]


def cells(*argv: str) -> list[RunSpec]:
    return resolve_cells(build_parser().parse_args(["run", *argv]))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--duration", "1e9"], "--duration must be at most 86,400 s"),
        (["--duration", "86401"], "--duration must be at most 86,400 s"),
        (["--warmup", "1e6"], "--warmup must be at most 86,400 s"),
        (["--suite", "default", "--repeat", "1000000"], "--repeat must be at most 1,000"),
        (["--inflight", "100000"], f"--inflight must be at most {MAX_INFLIGHT:,}"),
        (["--inflight", "1000", "--payload", "65536"], "exceed the kernel's socket send buffer"),
        (["--servers", "aiohttp", "--duration", "4000"], "planned to take about"),
        (["--duration", "3000", "--warmup", "1000"], "pass --allow-long-run to confirm"),
    ],
)
def test_values_beyond_sense_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UsageError, match=message):
        cells(*argv)
    assert main(["run", *argv]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.split()[0] in err


def test_a_long_run_goes_with_allow_long_run() -> None:
    (cell,) = cells("--servers", "aiohttp", "--duration", "3000", "--warmup", "1000",
                    "--allow-long-run")  # fmt: skip
    assert cell.duration_s == 3000


def test_in_flight_bytes_are_checked_against_the_send_buffer() -> None:
    check_inflight("--inflight", 64, 1000, 64 * 1078)  # exactly fits
    with pytest.raises(UsageError, match="send buffer"):
        check_inflight("--inflight", 65, 1000, 64 * 1078)


def test_planned_time_of_the_default_suite_is_under_ten_minutes_and_counts_shared_runs() -> None:
    suite = load_suite("default")
    default = expand(suite.entries, suite.repeat)
    planned = planned_run_s(default)
    assert 5 * 60 < planned < 10 * 60
    assert planned < MAX_UNCONFIRMED_S
    # Two servers time-sliced in one run share its set-up and calibration.
    pair = cells("--servers", "aiohttp,websockets", "--duration", "3", "--warmup", "2")
    (alone,) = cells("--servers", "aiohttp", "--duration", "3", "--warmup", "2")
    assert planned_run_s([alone]) < planned_run_s(pair) < 2 * planned_run_s([alone])
    # Each server process past the first adds its start (and the broker's).
    two = replace(alone, server_workers=2, slice_s=0.0)
    assert planned_run_s([two]) > planned_run_s([replace(alone, slice_s=0.0)])


def test_durations_read_as_a_person_would() -> None:
    assert [format_duration(s) for s in (12, 581, 3600, 7500)] == [
        "12 s", "9 min 41 s", "1 h", "2 h 5 min",
    ]  # fmt: skip


def test_scenarios_run_against_a_target_as_the_default_suite_runs_them() -> None:
    echo = cells("--scenario", "echo", *TARGET, "--protocol", "raw")
    assert {(c.mode, c.server, c.loop, c.slice_s) for c in echo} == {
        ("closed", "raw", "external", 0.0), ("open", "raw", "external", 0.0),
    }  # fmt: skip
    (memory,) = cells("--scenario", "memory", *TARGET, "--protocol", "socketio",
                      "--label", "mine")  # fmt: skip
    assert (memory.server, memory.mode, memory.memory_steps) == (
        "mine",
        "memory",
        (0, 500, 1000),
    )
    assert all(not c.managed for c in [*echo, memory])
    polling = cells("--scenario", "polling", *TARGET, "--protocol", "socketio")
    assert {c.transport for c in polling} == {"polling"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenario", "reconnect", "--protocol", "raw"], "kills and restarts the server"),
        (["--scenario", "polling", "--protocol", "raw"], "no cells for a raw server"),
        (["--scenario", "echo", "--protocol", "raw", "--rate", "5"], "define an ad-hoc matrix"),
        (["--suite", "quick", "--protocol", "raw"], "--target measures one server"),
    ],
)
def test_scenarios_that_cannot_run_against_a_target_say_why(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        cells(*TARGET, *argv)


def test_memory_against_a_target_needs_its_pid() -> None:
    with pytest.raises(UsageError, match="--server-pid"):
        cells("--scenario", "memory", "--target", "http://127.0.0.1:9", "--protocol", "raw")
