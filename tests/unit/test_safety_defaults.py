"""Issue 8, item 6 and its last "done when": the generator refuses targets outside loopback
before it opens any connection or starts any process; servers bind 127.0.0.1 unless told
otherwise; nothing is launched through a shell. (Servers' behaviour on the wire: the origin
check and the bound address in tests/integration/test_server_safety.py, the 1 MiB message
limit in tests/integration/test_servers.py.)
"""

from __future__ import annotations

import ast
import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import cli
from servers.common import parse_args
from tests.conftest import REPO_ROOT, TIME_FACTOR

# 192.0.2.0/24 and 2001:db8::/32 are documentation addresses (RFC 5737, RFC 3849).
REMOTE_TARGETS = ["ws://192.0.2.1:9/", "http://192.0.2.1:9", "ws://10.0.0.1:8000/",
                  "ws://0.0.0.0:8000/", "ws://[2001:db8::1]:9/"]  # fmt: skip
REFUSAL_TIMEOUT_S = 2.0 * TIME_FACTOR


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every way the harness could open a connection or start a process, recorded and
    refused."""
    made: list[str] = []

    def recorder(name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            made.append(name)
            raise AssertionError(f"{name} called")

        return record

    for owner, name in [
        (socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "create_connection"),
        (asyncio.BaseEventLoop, "create_connection"), (asyncio, "open_connection"),
        (asyncio, "create_subprocess_exec"), (subprocess.Popen, "__init__"),
    ]:  # fmt: skip
        monkeypatch.setattr(owner, name, recorder(name))
    # The generator's WebSocket connections (picows, imported by name) and its processes.
    import bench.load.client
    import bench.metrics.fairness
    import bench.processes

    monkeypatch.setattr(bench.load.client, "ws_connect", recorder("ws_connect"))
    monkeypatch.setattr(bench.metrics.fairness, "ws_connect", recorder("ws_connect"))
    monkeypatch.setattr(bench.processes, "start_process", recorder("start_process"))
    monkeypatch.setattr(cli, "output_folder", recorder("output_folder"))
    yield made


@pytest.mark.parametrize(
    "argv",
    [["run", "--target", "ws://192.0.2.1:9/"]]  # the command, as typed
    + [["run", "--target", url, "--protocol", protocol]
       for url in REMOTE_TARGETS for protocol in ("raw", "socketio")],
    ids=lambda argv: " ".join(argv[2:]),
)  # fmt: skip
def test_a_target_outside_loopback_exits_2_without_opening_any_connection(
    argv: list[str], attempts: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code = cli.main(argv)
    took_s = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    expected = "needs --protocol" if "--protocol" not in argv else "is not a loopback address"
    assert line.startswith("wsbench: error: ") and expected in line
    assert attempts == []  # no connection, no process, no results folder
    assert took_s < REFUSAL_TIMEOUT_S


def test_loopback_targets_pass_the_same_check(attempts: list[str]) -> None:
    """The refusal above is about the address: the same command on loopback resolves."""
    for url in ("ws://127.0.0.1:9/", "ws://127.0.0.7:9/", "ws://[::1]:9/", "ws://localhost:9/"):
        (cell,) = cli.resolve_cells(
            cli.build_parser().parse_args(["run", "--target", url, "--protocol", "raw"])
        )
        assert cell.target_url == url
    assert attempts == []


def test_servers_bind_loopback_unless_told_otherwise() -> None:
    assert parse_args("server", []).host == "127.0.0.1"
    assert parse_args("server", ["--host", "0.0.0.0"]).host == "0.0.0.0"


# Calls that run a command through a shell.
SHELL_CALLS = {
    ("os", "system"),
    ("os", "popen"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
    ("asyncio", "create_subprocess_shell"),
}


def shell_launches(path: Path, root: Path = REPO_ROOT) -> list[str]:
    """``path``'s calls that go through a shell: any call with ``shell=True``, and the calls
    above, by module attribute or by bare name (an imported ``create_subprocess_shell``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        where = f"{path.relative_to(root)}:{node.lineno}"
        if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and not k.value.value)
               for k in node.keywords):  # fmt: skip
            found.append(f"{where} shell=")
        function = node.func
        if isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name):
            if (function.value.id, function.attr) in SHELL_CALLS:
                found.append(f"{where} {function.value.id}.{function.attr}")
        elif isinstance(function, ast.Name) and function.id in {n for _, n in SHELL_CALLS}:
            found.append(f"{where} {function.id}")
    return found


def test_nothing_is_launched_through_a_shell() -> None:
    files = [p for name in ("bench", "servers", "tests") for p in (REPO_ROOT / name).rglob("*.py")]
    assert len(files) > 50
    assert [hit for path in files for hit in shell_launches(path)] == []


def test_the_shell_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "launcher.py"
    sample.write_text(
        "import os, subprocess, asyncio\n"
        "subprocess.run('ls', shell=True)\n"
        "os.system('ls')\n"
        "asyncio.create_subprocess_shell('ls')\n"
        "subprocess.run(['ls'], shell=False)\n"
    )
    hits = shell_launches(sample, tmp_path)
    assert [hit.split(" ", 1)[1] for hit in hits] == [
        "shell=", "os.system", "asyncio.create_subprocess_shell",
    ]  # fmt: skip
