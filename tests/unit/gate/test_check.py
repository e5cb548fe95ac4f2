"""The regression gate on constructed results (no network): pass, fail, not significant,
errors, a missing cell, another machine, and malformed thresholds."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.cli import main
from bench.errors import UsageError
from bench.gate.check import FAIL, MODE_ABSOLUTE, MODE_NORMALISED, gate
from bench.gate.thresholds import Thresholds, load_thresholds, parse_thresholds
from tests.conftest import REPO_ROOT

THRESHOLDS = parse_thresholds(
    {
        "metrics": {
            "throughput": {"direction": "higher", "tolerance_pct": 10},
            "p99": {"direction": "lower", "tolerance_pct": 50},
            "wire_bytes": {"direction": "lower", "tolerance_pct": 0},
        },
        "override": [{"metric": "p99", "server": "socketio-asgi", "tolerance_pct": 200}],
    }
)
META: dict[str, Any] = {
    "machine": {"cpu_model": "Xeon", "cpu_count": 2, "memory_bytes": 1},
    "os": {"kernel": "6.1"},
    "python": {"version": "3.11.7", "implementation": "CPython"},
    "calibration": [{"payload_bytes": 32, "payload_kind": "text", "ceiling_msgs_s": 100_000.0}],
}


def cell(
    server: str = "websockets",
    throughput: float = 30_000.0,
    spread: float = 0.02,
    p99: float = 1_000.0,
    repeats: int = 3,
    errors: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "scenario": "echo", "server": server, "protocol": "raw", "transport": "websocket",
        "loop": "uvloop", "client": "fast", "mode": "closed", "connections": 10,
        "payload_bytes": 32, "payload_kind": "text", "target_rate": math.nan,
        "target_conns_s": math.nan, "inflight": 1, "ack": False, "workers": 1,
        "repeats": repeats, "failed_runs": 0, "errors": errors,
        "throughput_median": throughput, "throughput_ci_low": throughput * (1 - spread),
        "throughput_ci_high": throughput * (1 + spread), "p99_median": p99,
        "p99_ci_low": p99 * 0.9, "p99_ci_high": p99 * 1.1,
        "wire_bytes_up_per_msg_median": 38.0, **extra,
    }  # fmt: skip


def frame(*cells: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame.from_records(list(cells))


def run_gate(old: pd.DataFrame, new: pd.DataFrame, new_meta: dict[str, Any] | None = None,
             thresholds: Thresholds = THRESHOLDS) -> Any:  # fmt: skip
    return gate(old, META, new, new_meta or META, thresholds)


def verdicts(result: Any, metric: str) -> list[str]:
    return [row.verdict for row in result.rows if row.metric.startswith(metric)]


def test_unchanged_figures_pass() -> None:
    result = run_gate(frame(cell()), frame(cell(throughput=29_500.0)))
    assert result.passed and result.mode == MODE_ABSOLUTE
    assert verdicts(result, "throughput") == ["pass"]


def test_a_significant_drop_beyond_tolerance_fails() -> None:
    result = run_gate(frame(cell()), frame(cell(throughput=22_000.0)))
    assert not result.passed
    (row,) = [r for r in result.rows if r.metric == "throughput"]
    assert row.verdict == FAIL and row.change_pct == pytest.approx(-26.67, abs=0.01)
    assert "apart" in row.interval and row.threshold == "-10%"


def test_a_drop_whose_intervals_overlap_is_not_significant() -> None:
    # 25% lower, but the repeats scatter so widely that the intervals overlap.
    result = run_gate(frame(cell(spread=0.3)), frame(cell(throughput=22_500.0, spread=0.3)))
    assert result.passed
    assert verdicts(result, "throughput") == ["pass (not significant)"]


def test_an_improvement_passes() -> None:
    assert run_gate(frame(cell()), frame(cell(throughput=40_000.0))).passed


def test_one_pass_cells_are_not_judged() -> None:
    result = run_gate(frame(cell(repeats=1)), frame(cell(throughput=10_000.0, repeats=1)))
    assert result.passed
    assert verdicts(result, "throughput") == ["pass (one pass: not judged)"]


def test_a_generator_limited_cell_is_not_judged_on_speed_but_still_on_counts() -> None:
    # 3 of 3 current runs flagged client_bound: the 67% drop measured the generator (or the
    # host under it), not the server; wire bytes are counted and still judged.
    slow = cell(throughput=10_000.0, client_bound_runs=3, wire_bytes_up_per_msg_median=51.0)
    result = run_gate(frame(cell(client_bound_runs=0)), frame(slow))
    assert verdicts(result, "throughput") == [
        "pass (generator-limited: client_bound in current 3 of 3 runs; not judged)"
    ]
    assert verdicts(result, "wire_bytes") == [FAIL] and not result.passed
    (throughput_row,) = [row for row in result.rows if row.metric == "throughput"]
    assert throughput_row.not_judged and not throughput_row.failed
    # A limited baseline counts too.
    limited_baseline = run_gate(frame(cell(client_bound_runs=2)), frame(cell(throughput=10_000.0)))
    assert limited_baseline.passed
    assert "baseline 2 of 3" in verdicts(limited_baseline, "throughput")[0]


def test_a_cell_with_a_minority_of_limited_runs_is_judged() -> None:
    result = run_gate(frame(cell()), frame(cell(throughput=10_000.0, client_bound_runs=1)))
    assert verdicts(result, "throughput") == [FAIL] and not result.passed
    # Within tolerance, a limited cell passes plainly (nothing hidden behind "not judged").
    near = run_gate(frame(cell()), frame(cell(throughput=29_000.0, client_bound_runs=3)))
    assert verdicts(near, "throughput") == ["pass"]


def test_errors_always_fail() -> None:
    result = run_gate(frame(cell()), frame(cell(errors=1)))
    assert not result.passed
    assert verdicts(result, "errors") == [FAIL]


def test_a_cell_missing_from_the_run_fails() -> None:
    result = run_gate(frame(cell(), cell(server="aiohttp")), frame(cell()))
    assert not result.passed
    assert [r.current for r in result.rows if r.metric == "cell"] == ["missing"]


def test_exact_counts_fail_on_any_growth_beyond_tolerance() -> None:
    grown = cell(wire_bytes_up_per_msg_median=39.0)
    assert verdicts(run_gate(frame(cell()), frame(grown)), "wire_bytes") == [FAIL]


def test_overrides_widen_a_tolerance_for_one_server() -> None:
    old = frame(cell(server="socketio-asgi", protocol="socketio"))
    new = frame(cell(server="socketio-asgi", protocol="socketio", p99=2_500.0))
    assert verdicts(run_gate(old, new), "p99") == ["pass"]  # +150% within the 200% override
    plain = run_gate(frame(cell()), frame(cell(p99=2_500.0)))
    assert verdicts(plain, "p99") == [FAIL]  # websockets keeps the 50% tolerance


def test_another_machine_compares_throughput_against_each_runs_ceiling() -> None:
    other = copy.deepcopy(META)
    other["machine"]["cpu_model"] = "EPYC"
    other["calibration"][0]["ceiling_msgs_s"] = 200_000.0
    # Twice as fast a machine, twice the throughput: the same share of the ceiling, a pass.
    result = run_gate(frame(cell()), frame(cell(throughput=60_000.0)), other)
    assert result.mode == MODE_NORMALISED and "cpu_model" in result.mode_note
    assert result.passed
    assert [r.metric for r in result.rows if r.metric.startswith("throughput")] == [
        "throughput/ceiling"
    ]
    # The same absolute figure on the faster machine is half the share: a regression.
    slower = run_gate(frame(cell()), frame(cell(throughput=30_000.0)), other)
    assert not slower.passed


def test_another_machine_compares_efficiency_against_the_generators_cpu_in_the_same_runs() -> None:
    other = copy.deepcopy(META)
    other["machine"]["cpu_model"] = "EPYC"
    other["calibration"][0]["ceiling_msgs_s"] = 150_000.0  # calibrated in a fast moment
    vs_generator = {"efficiency_vs_generator_median": 0.75, "efficiency_vs_generator_ci_low": 0.74,
                    "efficiency_vs_generator_ci_high": 0.76}  # fmt: skip
    efficiency = {"efficiency_median": 50_000.0, "efficiency_ci_low": 49_000.0,
                  "efficiency_ci_high": 51_000.0}  # fmt: skip
    old = frame(cell(**efficiency, **vs_generator))
    rules = parse_thresholds(
        {"metrics": {"efficiency": {"direction": "higher", "tolerance_pct": 20}}}
    )

    def run_gate(old: pd.DataFrame, new: pd.DataFrame, meta: dict[str, Any]) -> Any:
        return gate(old, META, new, meta, rules)

    # The same efficiency is a third less of the faster ceiling, but not of the generator's
    # CPU measured beside it: a pass.
    steady = run_gate(old, frame(cell(**efficiency, **vs_generator)), other)
    rows = {r.metric: r for r in steady.rows}
    assert "efficiency/ceiling" not in rows and rows["efficiency/generator"].verdict == "pass"
    # The server spending 40% more CPU than the generator for the same messages: a regression.
    costly = {"efficiency_vs_generator_median": 0.45, "efficiency_vs_generator_ci_low": 0.44,
              "efficiency_vs_generator_ci_high": 0.46}  # fmt: skip
    result = run_gate(old, frame(cell(**efficiency, **costly)), other)
    assert {r.metric: r for r in result.rows}["efficiency/generator"].verdict == FAIL
    # Results without the generator's figure fall back to the ceiling.
    fallback = run_gate(frame(cell(**efficiency)), frame(cell(**efficiency)), other)
    assert "efficiency/ceiling" in {r.metric for r in fallback.rows}


def test_the_same_machine_at_another_speed_compares_absolute_figures_and_says_so() -> None:
    slowed_host = copy.deepcopy(META)
    slowed_host["calibration"][0]["ceiling_msgs_s"] = 50_000.0  # the host's speed halved
    result = run_gate(frame(cell()), frame(cell(throughput=15_500.0)), slowed_host)
    assert result.mode == MODE_ABSOLUTE
    assert any("speed moved" in note for note in result.notes)
    assert not result.passed  # absolute throughput, half the baseline's
    nearly = copy.deepcopy(META)
    nearly["calibration"][0]["ceiling_msgs_s"] = 92_000.0
    assert not run_gate(frame(cell()), frame(cell()), nearly).notes


def test_another_machine_judges_latency_by_socketio_raw_ratios_only() -> None:
    other = copy.deepcopy(META)
    other["machine"]["cpu_count"] = 8
    ratio = {"p99_ratio_vs_websockets_median": 2.0, "p99_ratio_vs_websockets_ci_low": 1.9,
             "p99_ratio_vs_websockets_ci_high": 2.1}  # fmt: skip
    old = frame(cell(), cell(server="socketio-asgi", protocol="socketio", **ratio))
    # +250%: beyond even socketio-asgi's 200% override.
    new_ratio = {
        "p99_ratio_vs_websockets_median": 7.0,
        "p99_ratio_vs_websockets_ci_low": 6.8,
        "p99_ratio_vs_websockets_ci_high": 7.2,
    }
    new = frame(cell(p99=300.0), cell(server="socketio-asgi", protocol="socketio", **new_ratio))
    result = run_gate(old, new, other)
    rows = {(r.cell.split()[1], r.metric): r for r in result.rows}
    assert rows[("websockets", "p99")].verdict.startswith("pass (absolute latency")
    assert rows[("socketio-asgi", "p99 ratio vs websockets")].verdict == FAIL


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[metrics.throughput\n", "not valid TOML"),
        ("[metrics.speed]\ndirection='higher'\ntolerance_pct=1\n", "unknown metric"),
        ("[metrics.p99]\ndirection='up'\ntolerance_pct=1\n", "direction"),
        ("[metrics.p99]\ndirection='lower'\ntolerance_pct=-1\n", "tolerance_pct"),
        ("[metrics.p99]\ndirection='lower'\ntolerance_pct='x'\n", "tolerance_pct"),
        ("[metrics.p99]\ndirection='lower'\ntolerance_pct=1\nextra=2\n", "unknown key"),
        ("colour = 'red'\n", "unknown key"),
        ("", "[metrics.NAME]"),
        ("[metrics.p99]\ndirection='lower'\ntolerance_pct=1\n[[override]]\nmetric='p50'\n"
         "tolerance_pct=1\n", "override 1"),
    ],
)  # fmt: skip
def test_malformed_threshold_files_are_refused_with_one_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_thresholds(path)


def test_the_committed_thresholds_load() -> None:
    thresholds = load_thresholds(REPO_ROOT / "results" / "thresholds.toml")
    assert {"throughput", "p99"} <= set(thresholds.rules)


def write_folder(folder: Path, summary: pd.DataFrame) -> None:
    folder.mkdir()
    summary.to_csv(folder / "summary.csv", index=False)
    pd.DataFrame({"run_id": ["x"]}).to_csv(folder / "runs.csv", index=False)
    (folder / "meta.json").write_text("{}")


def test_the_command_exits_0_on_pass_1_on_failure_2_on_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_folder(tmp_path / "base", frame(cell()))
    write_folder(tmp_path / "same", frame(cell(throughput=30_100.0)))
    write_folder(tmp_path / "slow", frame(cell(throughput=10_000.0)))
    base = ["--baseline", str(tmp_path / "base")]
    assert main(["check", str(tmp_path / "same"), *base]) == 0
    assert main(["check", str(tmp_path / "slow"), *base]) == 1
    printed = capsys.readouterr()
    # The failed check is named again on the last line, for logs cut to their tail.
    last = (printed.out + printed.err).strip().splitlines()[-1]
    assert last.startswith("failed: throughput echo websockets") and "-66.7%" in last
    for heading in ("metric", "cell", "baseline", "current", "change", "interval", "threshold",
                    "verdict"):  # fmt: skip
        assert heading in printed.out + printed.err
    assert main(["check", str(tmp_path / "nothing"), *base]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[metrics.p99\n")
    assert main(["check", str(tmp_path / "same"), *base, "--thresholds", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 2  # one line per refusal


def test_the_command_counts_checks_beyond_tolerance_that_were_not_judged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_folder(tmp_path / "base", frame(cell()))
    write_folder(tmp_path / "limited", frame(cell(throughput=10_000.0, client_bound_runs=3)))
    assert main(["check", str(tmp_path / "limited"), "--baseline", str(tmp_path / "base")]) == 0
    printed = capsys.readouterr()
    summary_line = (printed.out + printed.err).strip().splitlines()[-1]
    assert "checks passed (1 of them beyond tolerance but not judged" in summary_line


def test_baseline_promotes_a_folder_and_refuses_to_overwrite(tmp_path: Path) -> None:
    write_folder(tmp_path / "run", frame(cell()))
    target = tmp_path / "baseline"
    assert main(["baseline", str(tmp_path / "run"), "--to", str(target)]) == 0
    assert (target / "summary.csv").is_file() and (target / "runs.csv").is_file()
    assert main(["baseline", str(tmp_path / "run"), "--to", str(target)]) == 2
    assert main(["baseline", str(tmp_path / "run"), "--to", str(target), "--force"]) == 0


def test_efficiency_is_compared_as_is_on_the_same_machine_at_another_speed() -> None:
    thresholds = parse_thresholds(
        {"metrics": {"efficiency": {"direction": "higher", "tolerance_pct": 15}}}
    )
    slowed_host = copy.deepcopy(META)
    slowed_host["calibration"][0]["ceiling_msgs_s"] = 50_000.0
    efficiency = {"efficiency_median": 26_000.0, "efficiency_ci_low": 25_000.0,
                  "efficiency_ci_high": 27_000.0}  # fmt: skip
    handicapped = {"efficiency_median": 12_000.0, "efficiency_ci_low": 11_500.0,
                   "efficiency_ci_high": 12_500.0}  # fmt: skip
    old = frame(cell(**efficiency))
    # Messages per CPU-second do not depend on the host's speed: a halved ceiling does not
    # excuse a halved efficiency, and an unchanged one passes.
    assert not gate(old, META, frame(cell(**handicapped)), slowed_host, thresholds).passed
    assert gate(old, META, frame(cell(**efficiency)), slowed_host, thresholds).passed


COUNTS = parse_thresholds(
    {"metrics": {"instructions_per_msg": {"direction": "lower", "tolerance_pct": 1}}}
)
COUNTED: dict[str, Any] = {
    **copy.deepcopy(META),
    "machine": {**META["machine"], "cpu_flags_sha256": "aaaa"},
    "os": {"kernel": "6.1", "libc": "glibc 2.36"},
    "packages": {"aiohttp": "3.10.0"},
}


def counted_cell(per_msg: float) -> dict[str, Any]:
    return cell(server="aiohttp", repeats=1, instructions_per_msg_median=per_msg)


def test_instruction_counts_are_judged_on_the_same_cpu_and_software_only() -> None:
    grown = frame(counted_cell(39_427.0))  # +3.1%, as a CI run on another VM read
    same = gate(frame(counted_cell(38_243.0)), COUNTED, grown, COUNTED, COUNTS)
    assert verdicts(same, "instructions_per_msg") == [FAIL]
    other_cpu = copy.deepcopy(COUNTED)
    other_cpu["machine"]["cpu_flags_sha256"] = "bbbb"
    moved = gate(frame(counted_cell(38_243.0)), COUNTED, grown, other_cpu, COUNTS)
    assert moved.passed and verdicts(moved, "instructions_per_msg") == [
        "pass (counted on other CPU or software: not judged)"
    ]
    assert any("local-baseline" in note and "cpu_flags_sha256" in note for note in moved.notes)
    other_library = copy.deepcopy(COUNTED)
    other_library["packages"]["aiohttp"] = "3.11.0"
    assert gate(frame(counted_cell(38_243.0)), COUNTED, grown, other_library, COUNTS).passed
    # A count within tolerance passes as it is either way.
    steady = gate(frame(counted_cell(38_243.0)), COUNTED, frame(counted_cell(38_300.0)),
                  other_cpu, COUNTS)  # fmt: skip
    assert verdicts(steady, "instructions_per_msg") == ["pass"]


def test_a_stamp_without_cpu_flags_leaves_counts_unjudged_but_the_machine_the_same() -> None:
    older = copy.deepcopy(COUNTED)
    del older["machine"]["cpu_flags_sha256"]  # stamps before 2026-12-03
    result = gate(frame(counted_cell(38_243.0)), older, frame(counted_cell(39_427.0)), COUNTED,
                  COUNTS)  # fmt: skip
    assert result.mode == MODE_ABSOLUTE and result.passed
    assert any("cpu_flags_sha256 None -> 'aaaa'" in note for note in result.notes)


def test_a_generator_on_other_shard_machines_is_another_machine() -> None:
    sharded = copy.deepcopy(META)
    sharded["cluster"] = {
        "kind": "scheduler",
        "hosts": {
            "tcp://10.0.0.2:40001": {"cpu_model": "Xeon", "cpu_count": 32, "python": "3.11.7"}
        },
    }
    result = run_gate(frame(cell()), frame(cell()), sharded)
    assert result.mode == MODE_NORMALISED and "cluster.hosts" in result.mode_note
