"""Issue 18, item 1: a mode is its module and one registration. The throwaway burst mode
(tests/integration/burst_mode.py, its worker beside it) is registered from outside bench/ and
runs end to end: its option on the command line and in a suite, its checks, its worker, its
columns in runs.csv, its metric and ratio in summary.csv, its progress line and its verdict
question in the report, with no edit anywhere else."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from bench import modes
from bench.errors import UsageError
from tests.conftest import REPO_ROOT, TIME_FACTOR
from tests.integration.burst_mode import BURST

pytestmark = pytest.mark.integration

RUN_TIMEOUT_S = 180.0 * TIME_FACTOR
# A harness process with the burst mode registered, then the command line as usual.
LAUNCH = (
    "import sys; from bench import modes; from tests.integration.burst_mode import BURST; "
    "modes.register(BURST); from bench.cli import main; raise SystemExit(main(sys.argv[1:]))"
)


def wsbench_with_burst(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LAUNCH, *argv], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=RUN_TIMEOUT_S,
    )  # fmt: skip


@pytest.fixture
def burst_registered() -> object:
    modes.register(BURST)
    try:
        yield BURST
    finally:
        modes.unregister(BURST.name)


def test_nothing_in_the_harness_names_the_throwaway_mode() -> None:
    # ("burst" is an English word the harness uses; its name as a mode, option or column not.)
    names = ('"burst"', "'burst'", "--burst", "burst_", "burst_worker", "burst_mode")
    for path in (REPO_ROOT / "bench").rglob("*"):
        if path.suffix in (".py", ".toml"):
            text = path.read_text()
            assert not [name for name in names if name in text], path


def test_the_throwaway_mode_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "burst"
    done = wsbench_with_burst(
        "run", "--mode", "burst", "--burst", "5", "--servers", "websockets,socketio-aiohttp",
        "--connections", "4", "--duration", "1", "--warmup", "0.5", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "20 of 20 burst echoes back" in done.stdout + done.stderr  # its progress line
    with open(out / "runs.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [r["server"] for r in rows] == ["websockets", "socketio-aiohttp"]
    for row in rows:
        assert (row["mode"], row["scenario"], row["status"]) == ("burst", "burst", "ok")
        assert (row["burst_size"], row["burst_echoes"], row["burst_whole"]) == ("5", "20", "True")
        assert row["errors"] == "0" and row["throughput_msgs_s"] == "nan"  # not a throughput
    with open(out / "summary.csv", newline="") as stream:
        summary = list(csv.DictReader(stream))
    assert {r["burst_echoes_median"] for r in summary} == {"20.0"}
    socketio = next(r for r in summary if r["server"] == "socketio-aiohttp")
    assert socketio["burst_echoes_ratio_vs_websockets_median"] == "1.0"
    page = (out / "report.html").read_text()
    assert "Did every burst come back?" in page and "websockets 20" in page


def test_its_option_is_checked_like_the_built_in_ones(tmp_path: Path) -> None:
    for argv, message in [
        (["--mode", "burst"], "--mode burst needs --burst"),
        (["--mode", "closed", "--burst", "3"], "--burst applies to --mode burst only"),
        (["--mode", "burst", "--burst", "0"], "--burst must be positive"),
        (["--mode", "burst", "--burst", "3", "--ack"], "without acks (no --ack)"),
    ]:
        done = wsbench_with_burst("run", *argv, "--out", str(tmp_path / "x"))
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_a_suite_entry_takes_its_option(burst_registered: object) -> None:
    from bench.scenarios import expand, parse_suite

    suite = ('[[run]]\nscenario = "b"\nservers = ["aiohttp"]\nmode = "burst"\n'
             'duration_s = 1\nburst = 3\n')  # fmt: skip
    (cell,) = expand(parse_suite(suite, "t").entries, repeat=1)
    assert (cell.mode, cell.params, cell.worker_module) == (
        "burst",
        (("burst", 3),),
        "tests.integration.burst_worker",
    )
    with pytest.raises(UsageError, match="burst mode needs burst"):
        parse_suite(suite.replace("burst = 3\n", ""), "t")


def test_the_gate_knows_its_metric(burst_registered: object) -> None:
    from bench.gate.thresholds import parse_thresholds

    rule = {"metrics": {"burst_echoes": {"direction": "higher", "tolerance_pct": 1}}}
    assert parse_thresholds(rule).rules["burst_echoes"].direction == "higher"
    modes.unregister(BURST.name)
    with pytest.raises(UsageError, match="unknown metric"):
        parse_thresholds(rule)
