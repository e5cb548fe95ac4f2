"""bench.callgrind's pure parts and the instructions mode's arithmetic (no valgrind run)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

from bench import callgrind
from bench.errors import RunFailed
from bench.modes import instructions
from bench.runner import RunResult
from bench.spec import RunSpec

DUMP = """version: 1
creator: callgrind-3.19.0
cmd:  python -m servers.websockets
events: Ir
summary: 197895401
totals: 198146631
"""


def test_a_dumps_summary_is_its_instruction_count() -> None:
    assert callgrind.parse_summary(DUMP) == 197_895_401
    with pytest.raises(ValueError, match="no summary"):
        callgrind.parse_summary("events: Ir\n")


def test_the_server_runs_under_callgrind_with_instrumentation_off_and_no_aslr() -> None:
    argv = callgrind.wrapper(Path("/tmp/x"))
    assert "--addr-no-randomize" in argv and "--tool=callgrind" in argv
    assert "--instr-atstart=no" in argv and "--callgrind-out-file=/tmp/x/callgrind.out.%p" in argv


def cell(**fields: object) -> RunSpec:
    base = {"scenario": "instructions", "server": "websockets", "protocol": "raw",
            "loop": "uvloop", "mode": "instructions", "connections": 10, "payload_bytes": 32,
            "payload_kind": "text", "warmup_s": 0.0, "duration_s": 10.0,
            "params": (("messages", 2000),)}  # fmt: skip
    return RunSpec(**{**base, **fields})  # type: ignore[arg-type]


def test_per_message_is_the_counted_pass_over_its_messages() -> None:
    result = RunResult(cell(), "r", "")
    result.instructions = (2000, 5_000_000, 200_400_000, 200_000_000)
    result.valgrind_version = "valgrind-3.19.0"
    fields = instructions.MODE.fill(result)
    assert fields["instructions_per_msg"] == 100_000.0
    assert fields["instructions_per_conn"] == 500_000.0  # 10 connections' set-ups
    assert fields["instructions_first_pass_pct"] == 0.2
    assert (fields["instructions_total"], fields["instructions_messages"]) == (200_000_000, 2000)


def test_node_servers_are_refused_in_one_line_and_python_ones_not() -> None:
    assert "V8" in instructions.MODE.server_refused(cell(server="node-ws"))  # type: ignore[misc]
    assert instructions.MODE.server_refused(cell()) == ""  # type: ignore[misc]


def test_the_time_model_grows_with_the_messages() -> None:
    few, many = (instructions.MODE.time_s(cell(params=(("messages", n),)), 1)  # type: ignore[misc]
                 for n in (100, 10_000))  # fmt: skip
    assert math.isfinite(few) and many > few


def test_the_layout_is_one_place_one_run_at_a_time(tmp_path: Path) -> None:
    folder = tmp_path / "wsbench-callgrind"
    layout = callgrind.Layout.make(tmp_path / "repo", folder)
    try:
        assert os.readlink(folder / "r") == str(tmp_path / "repo")
        assert os.readlink(folder / "v") == sys.prefix
        with pytest.raises(RunFailed, match="counted runs go one at a time"):
            callgrind.Layout.make(tmp_path / "other", folder)
        env = layout.environment({"WSBENCH_X": "1"})
        assert env["PYTHONPATH"] == str(folder / "r") and env["PYTHONSAFEPATH"] == "1"
        assert env["PYTHONHASHSEED"] == callgrind.HASH_SEED and env["WSBENCH_X"] == "1"
    finally:
        layout.remove()
    assert not folder.exists()
    again = callgrind.Layout.make(tmp_path / "other", folder)  # free again, links made anew
    assert os.readlink(folder / "r") == str(tmp_path / "other")
    again.remove()
