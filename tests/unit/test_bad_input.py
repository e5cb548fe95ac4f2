"""Issue 8, item 4: every bad input is one line on stderr and exit code 2, never a traceback,
never a run. Completes the table in test_cli.py (which holds the first cases of each kind):
every numeric option given zero, a negative, a non-number, NaN and infinity; empty and partly
unknown name lists; scenario files that are malformed or carry unknown keys, through the loader
the command line uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from bench import cli
from bench.errors import UsageError
from bench.scenarios import MAX_PAYLOAD_BYTES, load_suite

# Open loop, so that --rate is taken; capacity mode, so that its options are.
OPEN = ["run", "--mode", "open", "--rate", "100"]
CAPACITY = ["run", "--mode", "capacity", "--slo-p99-ms", "10"]
REAL_OUTPUT_FOLDER = cli.output_folder


@pytest.fixture(autouse=True)
def nothing_starts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An input wrongly accepted fails its test here instead of creating a results folder and
    starting a benchmark."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("accepted: wsbench would have started a run")

    monkeypatch.setattr(cli, "output_folder", refuse)
    monkeypatch.setattr(cli, "_run_with_signals", refuse)
    yield


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


def assert_refused(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(argv, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("wsbench: error: ") and message in line, line


NUMBERS = [
    # (argv before the option, option, value, what the one line says)
    *[(["run"], f"--{name}", value, message)
      for name in ("connections", "duration", "repeat", "workers", "inflight")
      for value, message in (("0", "must be positive"), ("-2", "must be positive"),
                             ("many", "not a number"))],
    (["run"], "--connections", "1.5", "not a number"),
    (["run"], "--duration", "nan", "must be a finite number"),
    (["run"], "--duration", "inf", "must be a finite number"),
    (["run"], "--warmup", "-1", "must be zero or more"),
    (["run"], "--warmup", "soon", "not a number"),
    (["run"], "--warmup", "inf", "must be a finite number"),
    (OPEN[:-2], "--rate", "0", "--rate must be positive"),
    (OPEN[:-2], "--rate", "-100", "--rate must be positive"),
    (OPEN[:-2], "--rate", "fast", "not a number"),
    (OPEN[:-2], "--rate", "nan", "must be a finite number"),
    (OPEN[:-2], "--rate", "inf", "must be a finite number"),
    (["run"], "--payload", "0", "payload of 0 bytes is outside"),
    (["run"], "--payload", "-32", "payload of -32 bytes is outside"),
    (["run"], "--payload", "big", "not a number"),
    # One byte over what fits the servers' 1 MiB limit with Socket.IO's envelope.
    (["run"], "--payload", str(MAX_PAYLOAD_BYTES + 1), "servers accept at most 1048576 bytes"),
    (["run"], "--slice", "-1", "must be zero or more"),
    (["run"], "--slice", "nan", "must be a finite number"),
    (CAPACITY[:-2], "--slo-p99-ms", "0", "--slo-p99-ms must be positive"),
    (CAPACITY[:-2], "--slo-p99-ms", "nan", "must be a finite number"),
    (CAPACITY, "--capacity-steps", "0", "--capacity-steps must be positive"),
    (["run", "--mode", "connect"], "--connect-rate", "-5", "--connect-rate must be zero or more"),
    (["run", "--mode", "connect"], "--connect-rate", "x", "not a number"),
    (["run", "--mode", "fanout", "--rate", "5"], "--slow-share", "1", "a share of the receivers"),
    (["run"], "--handicap-us", "0", "--handicap-us must be above 0"),
    (["run"], "--handicap-us", "nan", "--handicap-us must be above 0"),
    (["run", "--target", "ws://127.0.0.1:9/", "--protocol", "raw"], "--server-pid", "0",
     "no such process"),
    (["run", "--target", "ws://127.0.0.1:9/", "--protocol", "raw"], "--server-pid", "me",
     "not a number"),
    (["calibrate"], "--rounds", "0", "--rounds must be positive"),
    (["calibrate"], "--duration", "inf", "must be a finite number"),
    (["overhead"], "--connections", "-1", "--connections must be positive"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("before", "option", "value", "message"), NUMBERS,
    ids=[" ".join([*before, option, value]) for before, option, value, _ in NUMBERS],
)  # fmt: skip
def test_zero_negative_and_non_numeric_values_are_refused_in_one_line(
    before: list[str], option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_refused([*before, option, value], message, capsys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--servers", "websockets,nginx"], "unknown server 'nginx'"),
        (["run", "--servers", ""], "--servers is empty"),
        (["run", "--servers", ","], "--servers is empty"),
        (["run", "--loops", "asyncio,trio"], "unknown loop 'trio'"),
        (["run", "--loops", ""], "--loops is empty"),  # was taken as the default loop
        (["run", "--suite", "quick", "--servers", "nginx"], "unknown server 'nginx'"),
        (["run", "--suite", "quick", "--loops", ""], "--loops is empty"),
        (["run", "--scenario", "echo", "--loops", "trio"], "unknown loop 'trio'"),
        (["run", "--scenario", ""], "unknown scenario ''"),  # was the ad-hoc default matrix
        (["run", "--target", "", "--protocol", "raw"], "is not a ws://, http://, wss://"),  # same
        (["run", "--mode", "sideways"], "invalid choice"),
        (["run", "--payload-kind", "yaml"], "invalid choice"),
        (["run", "--payload-kind", "json"], "a JSON object with the header needs 52"),
        (["overhead", "--server", "nginx"], "invalid choice"),
        (["run", "--mode", "closed", "--rate", "100"], "--rate applies to --mode open"),
        (["run", "--mode", "connect", "--rate", "100"], "--rate applies to --mode open"),
        (["run", "--mode", "capacity", "--slo-p99-ms", "5", "--rate", "100"],
         "--rate applies to --mode open"),
        (["run", "--mode", "fanout"], "--mode fanout needs --rate"),
        (["run", "--suite", "quick", "--rate", "100"], "ad-hoc matrix"),
        (["run", "--target", "ws://127.0.0.1:9/", "--protocol", "raw", "--rate", "9"],
         "--rate applies to --mode open"),
    ],
)  # fmt: skip
def test_unknown_names_and_a_rate_without_open_mode_are_refused_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_refused(argv, message, capsys)


# --- scenario files --------------------------------------------------------------------------
# Users pick suites by name (--suite, --scenario); the suites are TOML files beside
# bench.scenarios, read by load_suite. Here load_suite reads a folder of broken ones instead.

VALID_ENTRY = 'scenario = "echo"\nservers = ["aiohttp"]\nmode = "closed"\nduration_s = 1\n'


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('name = "quick"\n[[run]\n' + VALID_ENTRY, "malformed TOML"),
        ('name = "quick"\nrepeat = \n[[run]]\n' + VALID_ENTRY, "malformed TOML"),
        ('name = "quick"\ncolour = "red"\n[[run]]\n' + VALID_ENTRY, "unknown key 'colour'"),
        ('name = "quick"\n[[run]]\n' + VALID_ENTRY + "rate = 5\n", "unknown key 'rate'"),
        ('name = "quick"\n[[run]]\n' + VALID_ENTRY.replace("1\n", '"1"\n'), "wrong type"),
        ('name = "quick"\n[[run]]\n' + VALID_ENTRY.replace("1\n", "nan\n"), "finite number"),
        ('name = "quick"\n[[run]]\n' + VALID_ENTRY.replace("1\n", "-1\n"), "must be positive"),
        ('name = "quick"\n[[run]]\n' + VALID_ENTRY.replace("aiohttp", "nginx"),
         "unknown server 'nginx'"),
        ('name = "quick"\n', "needs at least one [[run]] entry"),
    ],
    ids=["unclosed table", "no value", "unknown suite key", "unknown entry key", "wrong type",
         "nan", "negative", "unknown server", "no entries"],
)  # fmt: skip
@pytest.mark.parametrize(
    "argv", [["run", "--suite", "quick"], ["run", "--scenario", "echo"]], ids=["suite", "scenario"]
)
def test_a_broken_scenario_file_is_refused_in_one_line_naming_it(
    toml: str, message: str, argv: list[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    for name in ("quick", "default", "full"):
        (tmp_path / f"{name}.toml").write_text(toml)
    # What load_suite reads its TOML through: importlib.resources.files(bench.scenarios).
    monkeypatch.setattr(resources, "files", lambda package: tmp_path)
    assert_refused(argv, message, capsys)
    with pytest.raises(UsageError, match="suite 'quick'"):
        load_suite("quick")


def test_the_shipped_scenario_files_are_read_from_the_package() -> None:
    """The monkeypatched loader above is the real one: it finds the shipped suites."""
    assert load_suite("quick").entries


def test_an_output_path_that_is_a_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "output_folder", REAL_OUTPUT_FOLDER)  # it refuses this input
    existing = tmp_path / "results"
    existing.write_text("not a folder")
    assert_refused(["run", "--servers", "aiohttp", "--out", str(existing)], "is not a folder",
                   capsys)  # fmt: skip


def test_a_bug_in_the_harness_is_one_line_and_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bench.cli

    def broken(args: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(bench.cli, "resolve_cells", broken)
    assert bench.cli.main(["run"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError('simulated bug')" in err
    assert "Traceback" not in err
    log = Path(err.split("traceback in ")[1].rstrip(")\n"))
    assert "simulated bug" in log.read_text()
    log.unlink()
