"""Issue 8's reliability matrix: ``wsbench run`` as a user runs it (a subprocess), ended
normally, by a bug inside a run, by SIGINT and by SIGTERM, and with servers killed mid-run.

Every process the harness starts (calibration echo server, servers under test, generator
workers) is collected while it runs; afterwards none may be alive. runs.csv must hold exactly
the cells the progress lines said were completed, each with exact message accounting, and
meta.json must say how far the suite got. Run-time failures (an unreachable target, one that is
not a WebSocket server, a protocol mismatch) exit 3 with one clear line.
"""

from __future__ import annotations

import csv
import http.server
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from bench.cli import EXIT_INTERRUPTED, main
from bench.errors import EXIT_RUN_FAILED
from bench.load.coordinator import START_DELAY_S
from bench.results import SCHEMA_VERSION
from tests.conftest import REPO_ROOT, TIME_FACTOR, ServerProcess
from tests.integration.faulty_harness import INJECTED

pytestmark = pytest.mark.integration

# Two servers, two passes: four cells (two time-sliced runs, or four runs with --slice 0).
SMALL_RUN = ["--servers", "websockets,aiohttp", "--duration", "1", "--warmup", "0.3",
             "--repeat", "2"]  # fmt: skip
CELLS = 4
CONNECTIONS = 10  # wsbench run's default
# The whole small run: interpreter start, calibration, four cells, the report.
RUN_TIMEOUT_S = 180.0 * TIME_FACTOR
# From a signal to the exit: workers get 2 s and servers 5 s to stop, then the report.
STOP_TIMEOUT_S = 45.0 * TIME_FACTOR
POLL_S = 0.02
# A progress line: "[2/4] aiohttp  uvloop closed ...", printed as each cell is written.
COMPLETED_LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+) ")
INTERRUPTED_LINE = "wsbench: interrupted; every process it started was stopped"


def no_core_dumps() -> None:
    """In the harness (and so in every process it starts): a crashed server leaves no core."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return "?"


class WatchedHarness:
    """``wsbench run ... --out DIR`` as a subprocess, and every descendant seen while it ran
    (sampled every ``POLL_S``; a process that lives a run's length cannot be missed)."""

    def __init__(self, tmp_path: Path, argv: list[str], module: str, env: dict[str, str]) -> None:
        self.out = tmp_path / "out"
        self.log_path = tmp_path / "wsbench-output.txt"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, "run", *argv, "--out", str(self.out)],
                cwd=REPO_ROOT, stdout=log, stderr=log, env={**os.environ, **env},
                preexec_fn=no_core_dumps,
            )  # fmt: skip
        self.handle = psutil.Process(self.process.pid)
        self.seen: dict[int, psutil.Process] = {}
        self.commands: dict[int, str] = {}  # each one's last command line read

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    def look(self) -> None:
        try:
            children = self.handle.children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for child in children:
            self.seen.setdefault(child.pid, child)
            # Read again while it lives: just after the fork it is still the harness's.
            command = command_line(child)
            if command not in ("?", ""):  # a zombie's is empty
                self.commands[child.pid] = command

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            self.look()
            if condition():
                return
            if self.process.poll() is not None:
                pytest.fail(f"wsbench exited ({self.process.returncode}) before {what}:\n"
                            f"{self.output}")  # fmt: skip
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout_s:.0f} s:\n{self.output}")
            time.sleep(POLL_S)

    def finish(self, timeout_s: float) -> int:
        """Wait for the exit, still collecting descendants; returns the exit code."""
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None:
            self.look()
            if time.monotonic() > deadline:
                pytest.fail(f"wsbench still running after {timeout_s:.0f} s:\n{self.output}")
            time.sleep(POLL_S)
        return self.process.returncode

    def running(self, module: str, exclude: frozenset[int] = frozenset()) -> list[psutil.Process]:
        """Live descendants running ``python -m module``, but for the PIDs in ``exclude``."""
        return [
            p
            for pid, p in self.seen.items()
            if pid not in exclude and alive(p) and f"-m {module}" in command_line(p)
        ]

    def started(self, module: str) -> bool:
        return any(f"-m {module}" in command for command in self.commands.values())

    def left_alive(self) -> list[str]:
        return [f"{pid}: {command_line(p)}" for pid, p in self.seen.items() if alive(p)]

    def stop_everything(self) -> None:
        """Teardown after a failed test: nothing of it may outlive the test."""
        for process in [*self.seen.values(), self.handle]:
            if alive(process):
                process.kill()
        self.process.wait()


@pytest.fixture
def start_harness(tmp_path: Path) -> Iterator[Callable[..., WatchedHarness]]:
    """``start_harness(*run_args, module="bench", env={})`` starts ``wsbench run``."""
    started: list[WatchedHarness] = []

    def start(
        *argv: str, module: str = "bench", env: dict[str, str] | None = None
    ) -> WatchedHarness:
        harness = WatchedHarness(tmp_path, list(argv), module, env or {})
        started.append(harness)
        return harness

    yield start
    for harness in started:
        harness.stop_everything()


def read_rows(out: Path) -> list[dict[str, str]]:
    if not (out / "runs.csv").is_file():
        return []
    with (out / "runs.csv").open(newline="") as stream:
        return list(csv.DictReader(stream))


def assert_nothing_left(harness: WatchedHarness, *modules: str) -> None:
    """None of the harness's descendants is alive, and those it must have started were seen
    (so that the check cannot pass by seeing nothing)."""
    assert harness.left_alive() == []
    for module in modules:
        assert harness.started(module), (module, harness.commands)


def assert_accounting(row: dict[str, str]) -> None:
    """The identity every row keeps: each message sent in the window was echoed (received)
    or never was (missing: in flight when the run ended, after the drain); frames matching no
    outstanding message are unexpected; errors are both."""
    sent, received, missing, unexpected, errors = (
        int(row[column]) for column in ("sent", "received", "missing", "unexpected", "errors")
    )
    assert sent == received + missing, row
    assert errors == missing + unexpected, row
    assert min(sent, received, missing, unexpected) >= 0, row


def assert_every_completed_cell_is_in_the_csv(harness: WatchedHarness) -> list[dict[str, str]]:
    """runs.csv holds exactly the cells the progress lines reported, parseable, each with exact
    accounting; meta.json is valid and counts them. Returns the rows."""
    rows = read_rows(harness.out)
    completed = [m for m in map(COMPLETED_LINE.match, harness.output.splitlines()) if m]
    assert [int(m.group(1)) for m in completed] == list(range(1, len(completed) + 1))
    assert [row["server"] for row in rows] == [m.group(3) for m in completed], harness.output
    assert len({row["run_id"] for row in rows}) == len(rows)
    for row in rows:
        assert int(row["schema_version"]) == SCHEMA_VERSION
        assert row["status"] in ("ok", "failed")
        assert_accounting(row)
    meta = json.loads((harness.out / "meta.json").read_text())
    assert meta["completed_cells"] == len(rows) and meta["cells"] == CELLS
    return rows


def assert_one_line_per_failure(output: str, failures: list[str]) -> None:
    """No traceback; one progress line per failed cell, naming why."""
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if " FAILED " in line]
    assert len(lines) == len(failures), output
    for line, reason in zip(lines, failures, strict=True):
        assert reason in line, (reason, line)


# --- normal exit, a bug inside a run, signals ------------------------------------------------


def test_a_normal_exit_leaves_no_process_and_every_cell_in_the_csv(
    start_harness: Callable[..., WatchedHarness],
) -> None:
    harness = start_harness(*SMALL_RUN)  # time-sliced: both servers of a pass in one run
    code = harness.finish(RUN_TIMEOUT_S)
    assert code == 0, harness.output
    rows = assert_every_completed_cell_is_in_the_csv(harness)
    assert len(rows) == CELLS and {row["status"] for row in rows} == {"ok"}
    meta = json.loads((harness.out / "meta.json").read_text())
    assert meta["status"] == "complete"
    # The pinned CPUs were kept awake for the whole suite, and their loops stopped with it.
    modules = ["bench.load.echo_server", "servers.websockets", "servers.aiohttp",
               "bench.load.worker"]  # fmt: skip
    if meta["pinning"]["pinned"]:
        assert meta["pinning"]["cpus_kept_awake"] == sorted(
            meta["pinning"]["server_cpus"] + meta["pinning"]["generator_cpus"]
        )
        modules.append("bench.keepawake")
    assert_nothing_left(harness, *modules)


def test_a_bug_inside_a_run_fails_that_cell_stops_its_processes_and_the_suite_goes_on(
    start_harness: Callable[..., WatchedHarness],
) -> None:
    # One server per run (--slice 0): the first run raises once its server and worker are up.
    harness = start_harness(*SMALL_RUN, "--slice", "0", module="tests.integration.faulty_harness")
    code = harness.finish(RUN_TIMEOUT_S)
    assert code == EXIT_RUN_FAILED, harness.output
    rows = assert_every_completed_cell_is_in_the_csv(harness)
    assert [row["status"] for row in rows] == ["failed", "ok", "ok", "ok"]
    assert f"internal error RuntimeError('{INJECTED}')" in rows[0]["failure"]
    traceback_log = harness.out / "logs" / rows[0]["run_id"] / "harness-error.log"
    assert INJECTED in traceback_log.read_text()  # the traceback is kept, not printed
    assert_one_line_per_failure(harness.output, [INJECTED])
    assert_nothing_left(harness, "servers.websockets", "servers.aiohttp", "bench.load.worker")


@pytest.mark.parametrize(
    ("signum", "slicing"),
    [(signal.SIGINT, ["--slice", "0"]), (signal.SIGTERM, [])],
    ids=["SIGINT-one-server-per-run", "SIGTERM-time-sliced"],
)
def test_a_signal_during_a_run_stops_everything_and_keeps_every_completed_cell(
    start_harness: Callable[..., WatchedHarness], signum: int, slicing: list[str]
) -> None:
    harness = start_harness(*SMALL_RUN, *slicing)
    harness.wait_for(lambda: len(read_rows(harness.out)) >= 1, RUN_TIMEOUT_S, "a completed cell")
    before = frozenset(harness.seen)
    # The next run is under way: its server started and its worker connected.
    harness.wait_for(lambda: bool(harness.running("bench.load.worker", exclude=before)),
                     RUN_TIMEOUT_S, "the next run's worker")  # fmt: skip
    harness.process.send_signal(signum)
    code = harness.finish(STOP_TIMEOUT_S)

    assert code == EXIT_INTERRUPTED, harness.output
    assert harness.output.strip().splitlines()[-1] == INTERRUPTED_LINE
    assert "Traceback" not in harness.output
    rows = assert_every_completed_cell_is_in_the_csv(harness)
    assert 1 <= len(rows) < CELLS
    assert json.loads((harness.out / "meta.json").read_text())["status"] == "interrupted"
    assert_nothing_left(harness, "servers.websockets", "servers.aiohttp", "bench.load.worker")
    # The interrupted suite's folder is a valid results folder: the report rebuilds from it.
    (harness.out / "report.html").unlink()
    assert main(["report", str(harness.out)]) == 0
    assert (harness.out / "report.html").stat().st_size > 0


# --- servers killed mid-run ------------------------------------------------------------------


def established_connections(process: psutil.Process) -> int:
    try:
        return sum(c.status == psutil.CONN_ESTABLISHED for c in process.net_connections("tcp"))
    except psutil.Error:
        return 0


def signal_server_under_load(
    harness: WatchedHarness, module: str, signum: int, exclude: frozenset[int]
) -> None:
    """Once ``module``'s server (not one in ``exclude``) holds the run's connections, wait for
    the measured window, then send it ``signum``."""

    def loaded() -> bool:
        servers = harness.running(module, exclude)
        return bool(servers) and established_connections(servers[0]) >= CONNECTIONS

    harness.wait_for(loaded, RUN_TIMEOUT_S, f"{module} holding {CONNECTIONS} connections")
    # The start signal goes out once every worker is connected; the warm-up is 0.3 s.
    time.sleep(START_DELAY_S + 0.5)
    (server,) = harness.running(module, exclude)
    server.send_signal(signum)


def test_servers_killed_mid_run_fail_their_rows_with_status_and_log_and_the_suite_goes_on(
    start_harness: Callable[..., WatchedHarness],
) -> None:
    # The fault handler makes a server that crashes (SIGSEGV) write its last words to its log.
    harness = start_harness(*SMALL_RUN, env={"PYTHONFAULTHANDLER": "1"})
    signal_server_under_load(harness, "servers.aiohttp", signal.SIGKILL, frozenset())
    # In the second pass, a crash of the other server.
    signal_server_under_load(harness, "servers.websockets", signal.SIGSEGV, frozenset(harness.seen))
    code = harness.finish(RUN_TIMEOUT_S)

    assert code == EXIT_RUN_FAILED, harness.output
    rows = assert_every_completed_cell_is_in_the_csv(harness)
    assert [(r["server"], r["repeat"], r["status"]) for r in rows] == [
        ("websockets", "1", "ok"), ("aiohttp", "1", "failed"),
        ("websockets", "2", "failed"), ("aiohttp", "2", "ok"),
    ]  # fmt: skip
    killed, crashed = rows[1], rows[2]
    assert killed["server_exit_status"] == str(-signal.SIGKILL)
    assert "server aiohttp exited during the run (status -9; its log" in killed["failure"]
    assert crashed["server_exit_status"] == str(-signal.SIGSEGV)
    crash = "server websockets exited during the run (status -11; its log ends: "
    assert crash in crashed["failure"]
    log = harness.out / "logs" / crashed["run_id"] / "server.log"
    last_line = log.read_text().strip().splitlines()[-1].strip()
    assert "Segmentation fault" in log.read_text()  # the log is kept with the results
    assert last_line.replace("[", "(").replace("]", ")")[-60:] in crashed["failure"]
    assert_one_line_per_failure(harness.output, ["status -9", "status -11"])
    assert_nothing_left(harness, "servers.websockets", "servers.aiohttp", "bench.load.worker")


def test_a_server_that_hangs_mid_run_fails_its_row_in_bounded_time_and_the_suite_goes_on(
    start_harness: Callable[..., WatchedHarness],
) -> None:
    # SIGSTOP: the server keeps its sockets open but never answers again (a deadlock, a
    # blocked event loop). Its echoes never come, its connections never close, and SIGTERM
    # stays pending, so only the harness's timeouts and SIGKILL can end the cell.
    harness = start_harness(*SMALL_RUN)
    signal_server_under_load(harness, "servers.websockets", signal.SIGSTOP, frozenset())
    code = harness.finish(RUN_TIMEOUT_S)

    assert code == EXIT_RUN_FAILED, harness.output
    rows = assert_every_completed_cell_is_in_the_csv(harness)
    assert [(r["server"], r["repeat"], r["status"]) for r in rows] == [
        ("websockets", "1", "failed"), ("aiohttp", "1", "ok"),
        ("websockets", "2", "ok"), ("aiohttp", "2", "ok"),
    ]  # fmt: skip
    hung = rows[0]
    # Its echoes never came: in the window (missing) or, when it stopped in its warm-up
    # slices, in the warm-up (counted as unexpected); either way, errors.
    assert int(hung["errors"]) > 0
    assert hung["server_exit_status"] == str(-signal.SIGKILL)  # it had to be killed
    reason = "server websockets stopped answering during the run ("
    assert (
        reason in hung["failure"] and "ignored SIGTERM for 5 s, so it was killed" in hung["failure"]
    )
    assert_one_line_per_failure(harness.output, [reason])
    assert_nothing_left(harness, "servers.websockets", "servers.aiohttp", "bench.load.worker")


# --- run-time failures: exit 3, one clear line -----------------------------------------------


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _PlainHttp(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"a plain web page\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def plain_http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PlainHttp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("target", "protocol", "reason"),
    [
        ("unreachable", "raw", "Connect call failed"),
        ("plain-http", "raw", "cannot open a WebSocket to"),
        ("socketio_aiohttp", "raw", "cannot open a WebSocket to"),
        ("websockets", "socketio", "not a Socket.IO server"),
    ],
)
def test_a_target_that_cannot_be_measured_exits_3_with_one_clear_line(
    target: str, protocol: str, reason: str, tmp_path: Path, plain_http_port: int,
    server_process: Callable[[str, str], ServerProcess], capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    if target == "unreachable":
        port = free_loopback_port()  # nobody listens there
    elif target == "plain-http":
        port = plain_http_port
    else:
        port = server_process(target, "uvloop").port
    out = tmp_path / "out"
    code = main(["run", "--target", f"http://127.0.0.1:{port}", "--protocol", protocol,
                 "--duration", "1", "--warmup", "0", "--out", str(out)])  # fmt: skip
    output = capsys.readouterr().err
    assert code == EXIT_RUN_FAILED, output
    (row,) = read_rows(out)
    assert row["status"] == "failed" and reason in row["failure"]
    assert_one_line_per_failure(output, [row["failure"]])


def test_fail_fast_stops_after_the_first_failed_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["run", "--target", f"http://127.0.0.1:{free_loopback_port()}",
                 "--protocol", "raw", "--duration", "1", "--warmup", "0", "--repeat", "3",
                 "--fail-fast", "--out", str(out)])  # fmt: skip
    output = capsys.readouterr().err
    assert code == EXIT_RUN_FAILED, output
    (row,) = read_rows(out)  # the two other repeats never started
    assert row["status"] == "failed"
    assert "--fail-fast: stopping after a failed run; 2 of 3 runs not started" in output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "stopped (--fail-fast)" and meta["completed_cells"] == 1
    assert (out / "report.html").is_file()  # the report is written for what did run
