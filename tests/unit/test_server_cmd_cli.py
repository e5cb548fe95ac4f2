"""``--server-cmd``: the command parsed without a shell, its label, and the options it refuses,
each in one line (exit 2) before anything starts."""

from __future__ import annotations

import sys

import pytest

from bench.cli import build_parser, main, resolve_cells
from bench.errors import UsageError
from bench.server_cmd import default_label, fill_in, parse_server_cmd
from bench.spec import RunSpec

PYTHON = sys.executable
COMMAND = f"{PYTHON} my_server.py --port {{port}}"


def cells_for(*options: str, command: str = COMMAND) -> list[RunSpec]:
    argv = ["run", "--server-cmd", command, "--protocol", "raw", *options]
    return resolve_cells(build_parser().parse_args(argv))


def test_the_command_is_split_like_a_shell_would_but_never_run_by_one() -> None:
    argv = parse_server_cmd("node 'my app.js' --listen=127.0.0.1:{port} $HOME; rm -rf x")
    assert argv == ("node", "my app.js", "--listen=127.0.0.1:{port}", "$HOME;", "rm", "-rf", "x")
    assert fill_in(argv, "127.0.0.1", 4321)[2] == "--listen=127.0.0.1:4321"
    assert fill_in(("srv", "--host", "{host}", "-p", "{port}"), "127.0.0.1", 9) == [
        "srv", "--host", "127.0.0.1", "-p", "9",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "label"),
    [
        ("python3 my_server.py --port {port}", "my_server"),
        ("/usr/bin/python3.12 -u apps/chat.py {port}", "chat"),
        ("python -m tests.integration.user_server --port {port}", "user_server"),
        ("node dist/server.js {port}", "server"),
        ("./bin/gateway --port {port}", "gateway"),
        ("uvicorn app:main --port {port}", "uvicorn"),
        ("python -c 'print(1)' {port}", "raw"),  # no script to name it by: the protocol
    ],
)
def test_the_label_is_the_script_or_program_by_default(command: str, label: str) -> None:
    assert default_label(parse_server_cmd(command), "raw") == label


def test_cells_carry_the_command_and_run_on_an_external_loop() -> None:
    (cell,) = cells_for("--mode", "open", "--rate", "200", "--duration", "5")
    assert (cell.server, cell.loop, cell.mode, cell.rate_msgs_s) == (
        "my_server", "external", "open", 200.0,
    )  # fmt: skip
    assert cell.server_cmd == (PYTHON, "my_server.py", "--port", "{port}")
    assert cell.started_here and not cell.managed and cell.target_url is None
    assert cell.ready_timeout_s == 30.0


def test_label_and_ready_timeout_options() -> None:
    (cell,) = cells_for("--label", "team-app", "--ready-timeout", "90")
    assert (cell.server, cell.ready_timeout_s) == ("team-app", 90.0)


def test_a_default_label_that_names_a_registry_server_is_set_apart() -> None:
    (cell,) = cells_for(command=f"{PYTHON} -m servers.aiohttp --port {{port}}")
    assert cell.server == "aiohttp-cmd"


def test_every_mode_resolves_reconnect_included() -> None:
    modes = {
        "closed": [], "open": ["--rate", "9"], "capacity": ["--slo-p99-ms", "5"],
        "connect": [], "fanout": ["--rate", "9"], "memory": ["--memory-steps", "0,10,20"],
        "reconnect": ["--rate", "9"],
    }  # fmt: skip
    for mode, options in modes.items():
        (cell,) = cells_for("--mode", mode, *options)
        assert cell.mode == mode and cell.server_cmd


def test_a_scenario_runs_on_the_command_reconnect_included() -> None:
    cells = cells_for("--scenario", "reconnect")
    assert cells and all(c.mode == "reconnect" and c.server_cmd for c in cells)
    assert {c.protocol for c in cells} == {"raw"} and {c.server for c in cells} == {"my_server"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--target", "ws://127.0.0.1:9/"], "leave out --target"),
        (["--servers", "aiohttp"], "leave out --target, --suite, --servers"),
        (["--suite", "quick"], "leave out --target, --suite"),
        (["--loops", "asyncio"], "--loops"),
        (["--slice", "1"], "--slice"),
        (["--server-pid", "1"], "--server-pid"),
        (["--handicap-us", "5"], "not a --target or --server-cmd"),
        (["--label", "aiohttp"], "is a server of the harness's registry"),
        (["--label", "my app"], "letters, digits"),
        (["--label", "../up"], "letters, digits"),
        (["--ready-timeout", "0"], "--ready-timeout must be"),
        (["--mode", "memory", "--connections", "5"], "--mode memory holds the connections of"),
    ],
)
def test_refused_options(options: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        cells_for(*options)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("", "--server-cmd is empty"),
        ("   ", "--server-cmd is empty"),
        (f"{PYTHON} my_server.py --port 8000", "has no {port}"),
        ("{port}", "has no {port}"),
        (f"{PYTHON} 'my_server.py --port {{port}}", "no closing quotation"),
        ("no-such-program-wsbench --port {port}", "no executable program"),
    ],
)
def test_bad_commands(command: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--server-cmd", command, "--protocol", "raw"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_the_command_needs_a_protocol(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--server-cmd", COMMAND]) == 2
    assert "--server-cmd needs --protocol" in capsys.readouterr().err


def test_ready_timeout_goes_with_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--ready-timeout", "5"]) == 2
    assert "--ready-timeout goes with --server-cmd" in capsys.readouterr().err
