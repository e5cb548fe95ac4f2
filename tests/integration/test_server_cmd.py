"""``wsbench run --server-cmd``: a server the harness did not write (tests.integration.user_server)
measured in every mode, started on a port the harness picks, pinned, sampled and always
stopped; and commands that fail to start, each reported in one line."""

from __future__ import annotations

import asyncio
import csv
import json
import math
import os
import shlex
import sys
from pathlib import Path

import psutil
import pytest

from bench.cli import main
from bench.processes import generator_and_server_cpus
from bench.runner import UserServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TIME_FACTOR = float(os.environ.get("WSBENCH_TIME_FACTOR", "1"))
PYTHON = shlex.quote(sys.executable)
SERVER_CMD = f"{PYTHON} -m tests.integration.user_server --port {{port}}"
QUICK = ["--warmup", "0.5", "--duration", "1"]
# One cell per mode, as short as each allows; open is the issue's own example.
MODES = {
    "closed": ["--mode", "closed", *QUICK],
    "open": ["--mode", "open", "--rate", "200", "--duration", "5"],
    "capacity": ["--mode", "capacity", "--slo-p99-ms", "500", "--capacity-steps", "1", *QUICK],
    "connect": ["--mode", "connect", "--connections", "50"],
    "fanout": ["--mode", "fanout", "--rate", "50", "--connections", "10", *QUICK],
    "memory": ["--mode", "memory", "--memory-steps", "0,20,40", "--warmup", "0.3",
               "--duration", "0.5"],
    "reconnect": ["--mode", "reconnect", "--rate", "50", "--connections", "5", "--warmup", "1",
                  "--duration", "2"],
}  # fmt: skip


@pytest.fixture(autouse=True)
def in_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command runs in the current folder, as a user's would: here, the repository's."""
    monkeypatch.chdir(ROOT)


def user_servers_left() -> list[str]:
    """Command lines of the test server still running under this process."""
    left = []
    for child in psutil.Process().children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "user_server" in command or "time.sleep" in command:
            left.append(command)
    return left


def read_rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "runs.csv").open() as stream:
        return list(csv.DictReader(stream))


def run(out: Path, command: str, *options: str) -> int:
    argv = ["run", "--server-cmd", command, "--protocol", "raw", *options, "--out", str(out)]
    return main(argv)


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_measures_a_server_the_harness_did_not_write(mode: str, tmp_path: Path) -> None:
    assert run(tmp_path, SERVER_CMD, *MODES[mode]) == 0
    (row,) = read_rows(tmp_path)
    assert (row["server"], row["loop"], row["mode"]) == ("user_server", "external", mode)
    assert row["status"] == "ok", row["failure"]
    assert int(row["errors"]) == 0
    if mode == "reconnect":
        # A storm is not sampled (as with the registry's servers): what it measures is the
        # clients' recovery after the kill and restart.
        assert int(row["recovered_clients"]) == 5
        assert float(row["recovery_all_s"]) > 0
    else:
        # A storm is shorter than the sampling interval: its CPU is counted over its span.
        cpu = "server_cpu_us_per_conn" if mode == "connect" else "server_cpu_pct"
        assert not math.isnan(float(row[cpu] or "nan")), row
    if mode == "memory":
        assert not math.isnan(float(row["mem_kib_per_conn"] or "nan"))
    meta = json.loads((tmp_path / "meta.json").read_text())
    recorded = meta["server_commands"]["user_server"]
    assert recorded == {"argv": shlex.split(SERVER_CMD), "cwd": str(ROOT)}
    # The server negotiates compression when offered (aiohttp's default): recorded, not refused.
    assert meta["fairness_probes"]["user_server"]["extensions_negotiated"].startswith(
        "permessage-deflate"
    )
    assert user_servers_left() == []


def test_the_server_is_pinned_sampled_where_it_listens_and_stopped_with_its_group(
    tmp_path: Path,
) -> None:
    """Started by a launcher (a shell script here, as ``npm start`` would be): the process
    listening on the port is the one sampled, and stopping takes the launcher's children."""
    server_cpus, _ = generator_and_server_cpus()
    launcher = ["sh", "-c", '"$0" -m tests.integration.user_server --port "$1"; echo gone',
                sys.executable, "{port}"]  # fmt: skip

    async def scenario() -> None:
        server = UserServer("launched", launcher, server_cpus, tmp_path / "server.log", 10.0)
        try:
            await server.start()
            assert server.process is not None and server.sampled_pid is not None
            listener = psutil.Process(server.sampled_pid)
            assert server.sampled_pid != server.process.pid  # the shell's child, not the shell
            assert "user_server" in " ".join(listener.cmdline())
            if server_cpus:
                assert set(listener.cpu_affinity()) == set(server_cpus)
            first_port = server.port
            await server.kill_and_restart()
            assert server.port == first_port and server.sampled_pid != listener.pid
            # Killed (a zombie until init reaps it, its parent being gone too).
            assert not listener.is_running() or listener.status() == psutil.STATUS_ZOMBIE
        finally:
            await server.stop()

    asyncio.run(scenario())
    assert user_servers_left() == []


def test_a_command_that_exits_at_once_fails_its_cell_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = (
        f"{PYTHON} -c \"import sys; print('cannot bind', sys.argv[1], file=sys.stderr); "
        f'sys.exit(4)" {{port}}'
    )
    assert run(tmp_path, command, "--mode", "connect", "--connections", "5") == 3
    (row,) = read_rows(tmp_path)
    assert row["status"] == "failed"
    failure = row["failure"]
    assert "\n" not in failure
    assert "exited before listening on 127.0.0.1:" in failure
    assert "status 4" in failure and "its log ends: cannot bind" in failure
    output = capsys.readouterr()
    assert "Traceback" not in output.out + output.err
    assert user_servers_left() == []


def test_a_command_that_never_listens_times_out_in_one_line(tmp_path: Path) -> None:
    command = f'{PYTHON} -c "import sys, time; print(sys.argv[1]); time.sleep(60)" {{port}}'
    timeout = ["--ready-timeout", f"{1.0 * TIME_FACTOR:g}"]
    assert run(tmp_path, command, "--mode", "connect", "--connections", "5", *timeout) == 3
    (row,) = read_rows(tmp_path)
    failure = row["failure"]
    assert "\n" not in failure
    assert "did not accept connections on 127.0.0.1:" in failure
    assert f"within {1.0 * TIME_FACTOR:g} s" in failure
    assert "its log ends: " in failure  # the port it was given, printed
    assert user_servers_left() == []


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (f"{PYTHON} -m tests.integration.user_server --port 8000", "has no {port}"),
        ("no-such-program-wsbench --port {port}", "no executable program"),
        ("./no/such/server --port {port}", "no executable program './no/such/server'"),
    ],
)
def test_bad_commands_are_one_line_and_exit_2(
    command: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, command, "--mode", "connect") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "runs.csv").exists()
