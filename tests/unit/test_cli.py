"""Bad input: one line on stderr, exit code 2, nothing started (no network needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.catalog import SERVERS
from bench.cli import build_parser, main, output_folder, resolve_cells
from bench.errors import UsageError


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--servers", "nginx"], "unknown server 'nginx'"),
        (["run", "--loops", "trio"], "unknown loop 'trio'"),
        (["run", "--suite", "huge"], "invalid choice"),
        (["run", "--scenario", "nope"], "unknown scenario 'nope'"),
        (["run", "--connections", "0"], "--connections must be positive"),
        (["run", "--connections", "-3"], "--connections must be positive"),
        (["run", "--duration", "ten"], "not a number"),
        (["run", "--rate", "100"], "--rate applies to --mode open, fanout and reconnect only"),
        (["run", "--mode", "fanout", "--rate", "5", "--ack"], "--mode fanout publishes text"),
        (["run", "--mode", "open"], "--mode open needs --rate"),
        (["run", "--payload", "8"], "payload of 8 bytes is outside"),
        (["run", "--payload", "2000000"], "payload of 2000000 bytes is outside"),
        (["run", "--workers", "4", "--connections", "2"], "--workers must not exceed"),
        (["run", "--target", "ws://192.0.2.1:9/", "--protocol", "raw"], "not a loopback address"),
        (["run", "--target", "ws://127.0.0.1/", "--protocol", "raw"], "has no port"),
        (
            [
                "run",
                "--target",
                "ws://192.0.2.5:9/",
                "--protocol",
                "raw",
                "--allow-network",
                "192.0.2.0/30",
            ],
            "or 192.0.2.0/30 (--allow-network)",
        ),
        (
            ["run", "--servers", "aiohttp", "--allow-network", "192.0.2.0/30"],
            "--allow-network lets a --target",
        ),
        (
            [
                "run",
                "--target",
                "ws://127.0.0.1:9/",
                "--protocol",
                "raw",
                "--allow-network",
                "0.0.0.0/0",
            ],
            "not every address",
        ),
        (
            ["run", "--target", "ftp://127.0.0.1:21/", "--protocol", "raw"],
            "not a ws://, http://, wss://",
        ),
        (["run", "--target", "ws://127.0.0.1:9/"], "needs --protocol"),
        (["run", "--protocol", "raw"], "go with --target"),
        (["run", "--suite", "quick", "--scenario", "echo"], "not both"),
        (["run", "--suite", "quick", "--mode", "open"], "ad-hoc matrix"),
        (["run", "--suite", "quick", "--servers", "aiohttp", "--loops", "asyncio"], "no cell"),
        (["run", "--mode", "capacity"], "needs --slo-p99-ms"),
        (["run", "--slo-p99-ms", "5"], "applies to --mode capacity only"),
        (["run", "--client", "slow"], "invalid choice"),
        (["run", "--transport", "polling"], "raw servers lack it"),
        (
            [
                "run",
                "--servers",
                "socketio-asgi",
                "--transport",
                "polling",
                "--payload-kind",
                "binary",
            ],
            "text echoes without acks only",
        ),
        (["run", "--suite", "quick", "--transport", "polling"], "ad-hoc matrix"),
        (["run", "--slice", "0.01"], "--slice must be 0 (no slicing) or at least"),
        (["run", "--mode", "open", "--rate", "9", "--slice", "1"], "closed mode only"),
        (
            ["run", "--target", "ws://127.0.0.1:9/", "--protocol", "raw", "--slice", "1"],
            "leave out",
        ),
        (["run", "--connect-rate", "100"], "--connect-rate applies to --mode connect only"),
        (["run", "--mode", "connect", "--connect-rate", "-1"], "--connect-rate must be zero or"),
        (["run", "--mode", "connect", "--ack"], "one message per connection"),
        (["run", "--mode", "connect", "--client", "library"], "fast client only"),
        (["run", "--transport", "polling-upgrade", "--servers", "socketio-asgi"], "connect mode"),
        (["run", "--mode", "connect", "--transport", "polling-upgrade"], "Socket.IO servers only"),
        (["run", "--memory-steps", "0,1,2"], "--memory-steps applies to --mode memory only"),
        (["run", "--mode", "memory", "--memory-steps", "0,a,2"], "whole numbers"),
        (["run", "--mode", "memory", "--memory-steps", "5,1,2"], "increasing"),
        (["run", "--mode", "memory", "--connections", "9"], "no --connections"),
        (["run", "--slow-share", "0.1"], "--slow-share applies to --mode fanout only"),
        (["run", "--mode", "fanout", "--rate", "5", "--slow-share", "-1"], "zero or more"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert message in lines[0]
    assert "Traceback" not in captured.err


def test_non_empty_output_folder_needs_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "runs.csv").write_text("x")
    assert main(["run", "--servers", "aiohttp", "--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_force_replaces_an_earlier_runs_results(tmp_path: Path) -> None:
    for name in ("runs.csv", "histograms.jsonl", "summary.csv", "meta.json", "notes.txt"):
        (tmp_path / name).write_text("old")
    assert output_folder(tmp_path, force=True) == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # not a result file


def test_report_needs_a_results_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "no runs.csv" in capsys.readouterr().err


def cells_for(argv: list[str]) -> list:
    return resolve_cells(build_parser().parse_args(argv))


def test_adhoc_matrix_interleaves_repeats() -> None:
    cells = cells_for(["run", "--servers", "websockets,socketio-aiohttp", "--repeat", "2",
                       "--mode", "open", "--rate", "500", "--duration", "3"])  # fmt: skip
    assert [(c.server, c.repeat) for c in cells] == [
        ("websockets", 1), ("socketio-aiohttp", 1), ("websockets", 2), ("socketio-aiohttp", 2)
    ]  # fmt: skip
    assert {c.protocol for c in cells} == {"raw", "socketio"}
    assert all(c.mode == "open" and c.rate_msgs_s == 500 and c.duration_s == 3 for c in cells)


def test_suite_cells_can_be_narrowed_and_shortened() -> None:
    cells = cells_for(["run", "--suite", "default", "--servers", "aiohttp", "--duration", "1"])
    assert cells and all(c.server == "aiohttp" and c.duration_s == 1 for c in cells)
    assert {c.mode for c in cells} == {
        "closed", "open", "connect", "fanout", "memory", "instructions",
    }  # fmt: skip


def test_scenario_runs_as_in_the_default_suite() -> None:
    cells = cells_for(["run", "--scenario", "echo"])
    assert {c.server for c in cells} == set(SERVERS)
    assert {c.scenario for c in cells} == {"echo"}


def test_slice_option_changes_closed_loop_cells_only() -> None:
    cells = cells_for(["run", "--suite", "default", "--slice", "0"])
    assert {c.slice_s for c in cells} == {0.0}
    cells = cells_for(["run", "--suite", "default", "--slice", "1.5"])
    assert {(c.mode, c.slice_s) for c in cells} == {
        ("closed", 1.5), ("open", 0.0), ("connect", 0.0), ("fanout", 0.0), ("memory", 0.0),
        ("reconnect", 0.0), ("instructions", 0.0),
    }  # fmt: skip
    (cell,) = cells_for(["run", "--servers", "aiohttp", "--slice", "0.3"])
    assert cell.slice_s == 0.3


def test_connect_mode_cells_carry_the_storm() -> None:
    cells = cells_for(["run", "--mode", "connect", "--connections", "50", "--connect-rate", "100",
                       "--servers", "socketio-asgi", "--transport", "polling-upgrade"])  # fmt: skip
    (cell,) = cells
    assert (cell.scenario, cell.mode, cell.connections) == ("connect", "connect", 50)
    assert (cell.rate_conns_s, cell.transport, cell.warmup_s) == (100.0, "polling-upgrade", 0.0)
    (full_speed,) = cells_for(["run", "--mode", "connect", "--servers", "aiohttp"])
    assert full_speed.rate_conns_s == 0.0
    (target,) = cells_for(["run", "--mode", "connect", "--target", "ws://127.0.0.1:9/",
                           "--protocol", "raw", "--connect-rate", "5"])  # fmt: skip
    assert (target.scenario, target.rate_conns_s, target.warmup_s) == ("connect", 5.0, 0.0)


def test_memory_mode_cells_hold_steps_with_short_default_windows() -> None:
    (cell,) = cells_for(["run", "--mode", "memory", "--servers", "aiohttp"])
    assert (cell.scenario, cell.memory_steps, cell.connections) == (
        "memory", (0, 1000, 2000, 5000), 5000,
    )  # fmt: skip
    assert (cell.warmup_s, cell.duration_s) == (1.0, 1.0)
    (target,) = cells_for(["run", "--mode", "memory", "--target", "ws://127.0.0.1:9/",
                           "--protocol", "raw", "--memory-steps", "0,10,20",
                           "--server-pid", str(os.getpid())])  # fmt: skip
    assert (target.memory_steps, target.connections) == ((0, 10, 20), 20)
    with pytest.raises(UsageError, match="give the target's --server-pid"):
        cells_for(["run", "--mode", "memory", "--target", "ws://127.0.0.1:9/",
                   "--protocol", "raw", "--memory-steps", "0,10,20"])  # fmt: skip


def test_target_cell_is_labelled_by_protocol() -> None:
    (cell,) = cells_for(["run", "--target", "http://localhost:8000", "--protocol", "socketio"])
    assert cell.server == "socketio" and cell.target_url == "http://localhost:8000"
    assert not cell.managed


def write_results(folder: Path, kernel: str, throughput: float) -> None:
    import csv
    import json

    from bench.results import COLUMNS

    folder.mkdir()
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        {
            "scenario": "echo",
            "server": "aiohttp",
            "protocol": "raw",
            "transport": "websocket",
            "loop": "uvloop",
            "client": "fast",
            "mode": "closed",
            "connections": 10,
            "payload_bytes": 32,
            "payload_kind": "text",
            "target_rate": "nan",
            "inflight": 1,
            "ack": False,
            "workers": 1,
            "repeat": 1,
            "status": "ok",
            "errors": 0,
            "client_bound": False,
            "throughput_msgs_s": throughput,
            "p50_us": 100,
            "p99_us": 200,
        }
    )
    with (folder / "runs.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerow(row)
    (folder / "meta.json").write_text(json.dumps({"os": {"kernel": kernel}}))


def test_compare_refuses_different_environments_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_results(tmp_path / "old", "6.1", 1000.0)
    write_results(tmp_path / "new", "6.8", 1100.0)
    assert main(["compare", str(tmp_path / "old"), str(tmp_path / "new")]) == 2
    assert "os.kernel: '6.1' -> '6.8'" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "old"), str(tmp_path / "new"), "--force"]) == 0
    err = capsys.readouterr().err
    assert "WARNING: environments differ" in err and "+10.0%" in err
    assert (tmp_path / "new" / "compare.csv").is_file()
    page = (tmp_path / "new" / "compare.html").read_text()
    assert "environments differ" in page and "<code>--force</code> was given" in page
    assert f"comparison page in {tmp_path / 'new' / 'compare.html'}" in " ".join(err.split())


def test_compare_writes_the_page_beside_the_csv_with_every_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_results(tmp_path / "old", "6.1", 1000.0)
    write_results(tmp_path / "new", "6.1", 1100.0)
    out = tmp_path / "elsewhere" / "deltas.csv"
    out.parent.mkdir()
    assert main(["compare", str(tmp_path / "old"), str(tmp_path / "new"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["deltas.csv", "deltas.html"]
    assert not (tmp_path / "new" / "compare.html").exists()
    page = (out.parent / "deltas.html").read_text()
    body = page[page.index("<tbody>") : page.index("</tbody>")]
    rows = body.count("<tr")
    assert rows == 3  # one cell, three metrics
    for metric in ("throughput (msgs/s)", "p50 (µs)", "p99 (µs)"):
        assert f'<td class="text">{metric}</td>' in body
    assert body.count('<td class="key">aiohttp</td>') == 3
    assert "1,000 [no interval] n=1" in body and "1,100 [no interval] n=1" in body
    assert "+10.0%" in body
    assert "environments differ" not in page
    assert main(["compare", str(tmp_path / "old"), str(tmp_path / "new"), "--out", "x.html"]) == 2


def test_more_connections_than_the_open_file_limit_fail_up_front(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no open-file limit on this machine")
    assert main(["run", "--servers", "aiohttp", "--connections", str(hard)]) == 2
    err = capsys.readouterr().err
    assert f"but the limit is {hard:,}" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["run", "calibrate", "overhead"])
def test_cpus_are_kept_awake_unless_let_idle(command: str) -> None:
    parser = build_parser()
    assert parser.parse_args([command]).let_cpus_idle is False
    assert parser.parse_args([command, "--let-cpus-idle"]).let_cpus_idle is True


def test_servers_that_cannot_start_here_are_skipped_with_one_line_each(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import catalog
    from bench.cli import runnable

    monkeypatch.setattr(catalog, "NODE_DIR", tmp_path)  # no node_modules there
    cells = cells_for(["run", "--servers", "node-ws,aiohttp,node-socketio"])
    assert {c.server for c in cells} == {"node-ws", "aiohttp", "node-socketio"}  # resolved all
    kept = runnable(cells)
    assert [c.server for c in kept] == ["aiohttp"]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith("wsbench: skipping node-") for line in lines)
    assert all("npm ci" in line or "apt-get install nodejs" in line for line in lines)
    with pytest.raises(UsageError, match="no cell left to run"):
        runnable(cells_for(["run", "--servers", "node-ws"]))
