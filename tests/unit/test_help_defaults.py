"""Every default that a ``--help`` text states is the value the command really uses."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import pytest

from bench.cli import build_parser, resolve_cells
from bench.spec import RunSpec

DEFAULT = re.compile(r"\(default:? ([^;),]+(?:,\d+)*)")


def subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: argparse.ArgumentParser = commands.choices[name]
    return found


def stated_defaults(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Option -> the default its help states (the first one, for options that state more)."""
    stated = {}
    formatter = parser._get_formatter()
    for action in parser._actions:
        match = DEFAULT.search(formatter._expand_help(action) if action.help else "")
        if match and action.option_strings:
            stated[action.option_strings[0]] = match.group(1).strip()
    return stated


def cells(*argv: str) -> list[RunSpec]:
    return resolve_cells(build_parser().parse_args(["run", "--servers", "aiohttp", *argv]))


def cell(*argv: str) -> RunSpec:
    (only,) = cells(*argv)
    return only


# Where results go without --out (bench.cli.output_folder).
OUT_DEFAULT = "results/runs/<UTC time>"


def target_cell() -> RunSpec:
    argv = ["run", "--target", "ws://127.0.0.1:9/", "--protocol", "raw"]
    (only,) = resolve_cells(build_parser().parse_args(argv))
    return only


def server_cmd_cell() -> RunSpec:
    command = f"{sys.executable} server.py --port {{port}}"
    argv = ["run", "--server-cmd", command, "--protocol", "raw"]
    (only,) = resolve_cells(build_parser().parse_args(argv))
    return only


# What each stated default of `run` becomes: the cell resolved without that option.
RUN_DEFAULTS: dict[str, Any] = {
    "--connections": lambda: cell().connections,
    "--inflight": lambda: cell().inflight,
    "--payload": lambda: cell().payload_bytes,
    "--payload-kind": lambda: cell().payload_kind,
    "--duration": lambda: cell().duration_s,
    "--warmup": lambda: cell().warmup_s,
    "--workers": lambda: cell().workers,
    "--server-workers": lambda: cell().server_workers,
    "--repeat": lambda: cell().repeat,
    "--slice": lambda: cells("--servers", "aiohttp,websockets")[0].slice_s,
    "--client": lambda: cell().client,
    "--loops": lambda: cell().loop,
    "--capacity-steps": lambda: cell("--mode", "capacity", "--slo-p99-ms", "5").capacity_steps,
    "--memory-steps": lambda: ",".join(map(str, cell("--mode", "memory").memory_steps)),
    "--transport": lambda: cell("--servers", "socketio-aiohttp").transport,
    "--messages": lambda: dict(cell("--mode", "instructions").params)["messages"],
    "--connect-rate": lambda: "full speed" if cell("--mode", "connect").rate_conns_s == 0 else "",
    "--out": lambda: OUT_DEFAULT,
    "--label": lambda: "its protocol" if target_cell().server == "raw" else "",
    "--ready-timeout": lambda: server_cmd_cell().ready_timeout_s,
    "--let-cpus-idle": lambda: "keep them from halting",
    "--allow-long-run": lambda: "refuse",
    "--fail-fast": lambda: "record it",
}


def same(stated: str, actual: Any) -> bool:
    if isinstance(actual, bool | str):
        return stated == str(actual) or str(actual).startswith(stated)
    try:
        return float(stated.replace(",", "")) == float(actual)
    except ValueError:
        return False


def test_run_states_only_defaults_it_uses() -> None:
    stated = stated_defaults(subparser("run"))
    assert set(stated) <= set(RUN_DEFAULTS), (
        f"add to RUN_DEFAULTS: {set(stated) - set(RUN_DEFAULTS)}"
    )
    assert {"--connections", "--duration", "--warmup", "--slice", "--inflight"} <= set(stated)
    wrong = {
        option: (text, RUN_DEFAULTS[option]())
        for option, text in stated.items()
        if not same(text, RUN_DEFAULTS[option]())
    }
    assert not wrong, wrong


def test_mode_specific_defaults_in_the_help_are_used() -> None:
    help_text = " ".join((subparser("run").format_help()).split())
    memory = cell("--mode", "memory")
    assert f"settling time (default {memory.warmup_s:g})" in help_text
    assert f"sampling time (default {memory.duration_s:g})" in help_text
    connect = cell("--mode", "connect")
    assert f"connect {connect.warmup_s:g};" in help_text


@pytest.mark.parametrize("command", ["calibrate", "overhead"])
def test_other_commands_state_their_parsers_defaults(command: str) -> None:
    parser = subparser(command)
    stated = stated_defaults(parser)
    defaults = {a.option_strings[0]: a.default for a in parser._actions if a.option_strings}
    assert stated, f"{command}'s help states no default"
    flags = {a.option_strings[0] for a in parser._actions if isinstance(a.default, bool)}
    for option, text in stated.items():
        if option in flags:  # off unless given; the text says what "off" does
            continue
        expected = OUT_DEFAULT if option == "--out" else defaults[option]
        assert same(text, expected), (option, text, expected)


def test_the_parsers_own_defaults_stay_none_for_run() -> None:
    """`run` tells an option left out from one given (suites narrow by what was given), so its
    real defaults live in the resolver the help texts are checked against above."""
    args = build_parser().parse_args(["run"])
    for name in ("connections", "duration", "warmup", "inflight", "payload", "slice_s"):
        assert getattr(args, name) is None
