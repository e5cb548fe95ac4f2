"""Runs a list of cells into a results folder: runs.csv, histograms.jsonl, meta.json, report.html.

Also ``wsbench overhead``: the generator against a minimal picows echo client on the same
server in one run, interleaved, so the generator's own cost is measured, not assumed.
"""

from __future__ import annotations

import contextlib
import csv
import math
import statistics
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench import keepawake, modes
from bench.analyze.compare import deltas, stamp_differences
from bench.analyze.summary import summarize, write_summary
from bench.analyze.tidy import load_meta, load_runs
from bench.calibration import Calibration, calibrate
from bench.catalog import SERVERS
from bench.errors import RunFailed, UsageError
from bench.load.cluster import running_cluster
from bench.load.plan import WorkerPlan
from bench.metrics.environment import stamp
from bench.plan_time import format_duration, planned_run_s
from bench.processes import generator_and_server_cpus, repo_root, stop_all
from bench.redis_broker import redis_py_version, redis_server_version
from bench.report.compare_page import render_compare_page, run_description, write_compare_page
from bench.report.html import write_report
from bench.report.markdown import reference_table
from bench.results import ResultsWriter, write_json_atomically
from bench.runner import LOOPBACK, ManagedServer, Pinning, measure_solo, run_cell, run_sliced
from bench.spec import SHIPPED, RunSpec, run_groups, uses_calibration
from bench.target import websocket_url
from servers.shipped import equalised_settings, shipped_settings

console = Console(stderr=True, highlight=False, soft_wrap=True)


def current_pinning() -> Pinning:
    server_cpus, generator_cpus = generator_and_server_cpus()
    return Pinning(tuple(sorted(server_cpus)), tuple(sorted(generator_cpus)))


def cpus_to_keep_awake(pinning: Pinning, keep_cpus_awake: bool) -> frozenset[int]:
    """The pinned CPUs, when they are to be kept from halting (bench.keepawake); else none."""
    if not keep_cpus_awake:
        return frozenset()
    return frozenset(pinning.server_cpus + pinning.generator_cpus)


def _pinning_dict(pinning: Pinning, kept_awake: frozenset[int]) -> dict[str, Any]:
    # Whether the CPUs were kept awake moves every figure on a VM, so it sits in the stamp's
    # "pinning" section, which `wsbench compare` warns about when it differs.
    return {
        "server_cpus": list(pinning.server_cpus),
        "generator_cpus": list(pinning.generator_cpus),
        "pinned": bool(pinning.server_cpus),
        "cpus_kept_awake": sorted(kept_awake),
    }


# Start-up, connection set-up and drain per cell, beyond its warm-up and window: only weights
# for the progress bar's time estimate, never a measurement.
CELL_OVERHEAD_S = 1.5


def planned_s(cell: RunSpec) -> float:
    """A cell's expected share of the suite's time, for the progress bar (pure)."""
    return cell.warmup_s + cell.duration_s + CELL_OVERHEAD_S


def cell_label(cell: RunSpec) -> str:
    return f"{cell.scenario} {cell.server} {cell.loop} {cell.mode} r{cell.repeat}"


def suite_progress(output: Console = console) -> Progress:
    """Bar, current cell, runs done, elapsed and remaining time on a terminal; nothing (the
    per-run lines only) when stderr is not a terminal, as in CI logs."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("elapsed,"),
        TimeRemainingColumn(),
        TextColumn("left"),
        console=output,
        disable=not output.is_terminal,
        transient=True,
    )


def run_id_for(index: int, cell: RunSpec) -> str:
    return f"{index:03d}-{cell.scenario}-{cell.server}-{cell.loop}-{cell.mode}-r{cell.repeat}"


def _progress_line(index: int, total: int, record: dict[str, Any]) -> str:
    head = f"[{index}/{total}] {record['server']:<17} {record['loop']:<8} {record['mode']:<6}"
    if record.get("server_workers", 1) > 1:  # scale-out: how many processes, and the broker
        head += f" x{record['server_workers']} {record['broker']}"
    if record["status"] != "ok":
        return f"{head} [red]FAILED[/red] {escape(str(record['failure']))}"
    flags = []
    if record["errors"]:
        flags.append(f"[red]{record['errors']} errors[/red]")
    if record["client_bound"]:
        flags.append("[yellow]client_bound[/yellow]")
    mode = modes.get(record["mode"])
    figures = mode.progress(record) or modes.echo_figures(record)
    return (
        f"{head} {figures}  server CPU {record['server_cpu_pct']:>4.0f}%  "
        f"client CPU {record['client_cpu_pct']:>4.0f}%  {' '.join(flags)}"
    )


async def run_suite(
    cells: list[RunSpec],
    out: Path,
    argv: list[str],
    fail_fast: bool = False,
    keep_cpus_awake: bool = True,
) -> bool:
    """Run every cell (failures are recorded and the suite goes on, unless ``fail_fast``: then
    it stops after the first run that failed or had errors); True when all passed.
    ``keep_cpus_awake``: an idle-priority busy loop on each pinned CPU (bench.keepawake)."""
    pinning = current_pinning()
    awake_cpus = cpus_to_keep_awake(pinning, keep_cpus_awake)
    meta = stamp(argv, _pinning_dict(pinning, awake_cpus), repo_root())
    meta["cells"] = len(cells)
    handicaps = sorted({cell.handicap_us for cell in cells if cell.handicap_us})
    if handicaps:  # a deliberately slowed run must say so wherever its numbers go
        meta["handicap_us"] = handicaps[0] if len(handicaps) == 1 else handicaps
        console.print(
            f"[bold yellow]wsbench: servers burn {handicaps[0]:g} µs of CPU per message "
            "(--handicap-us): these numbers are slowed on purpose[/bold yellow]"
        )
    loops = sorted({cell.handicap_loops for cell in cells if cell.handicap_loops})
    if loops:
        meta["handicap_loops"] = loops[0]
        console.print(
            f"[bold yellow]wsbench: the servers run {loops[0]:,} extra loop iterations per "
            "message (--handicap-loops): these numbers are slowed on purpose[/bold yellow]"
        )
    # --server-cmd: what ran under each label, and where ("{port}" is the harness's pick).
    commands = {c.server: {"argv": list(c.server_cmd), "cwd": str(Path.cwd())}
                for c in cells if c.server_cmd}  # fmt: skip
    if commands:
        meta["server_commands"] = commands
    # --allow-network: the networks beyond loopback this run was let reach, said loudly.
    networks = sorted({n for c in cells for n in c.allow_network})
    if networks:
        meta["network"] = {"allowed": networks}
        console.print(
            f"[bold yellow]wsbench: --allow-network {','.join(networks)}: this run may send "
            "load beyond loopback[/bold yellow]"
        )
    # Scale-out: the broker that relayed broadcasts between server processes.
    if any(c.server_workers > 1 for c in cells):
        urls = sorted({c.redis_url for c in cells if c.server_workers > 1})
        meta["broker"] = {
            "kind": "redis",
            "started_by_harness": "" in urls,
            "redis_urls": [u for u in urls if u],
            "redis_server_version": redis_server_version(),
            "redis_py_version": redis_py_version(),
            "server_workers": sorted({c.server_workers for c in cells if c.server_workers > 1}),
        }
    # The tiers: the contract's settings, and what each shipped server's libraries ship.
    meta["tiers"] = {"equalised": equalised_settings()}
    shipped = sorted({c.server for c in cells if c.tier == SHIPPED and c.managed})
    if shipped:
        meta["tiers"]["shipped"] = {name: shipped_settings(name) for name in shipped}
    if any(c.tls or c.tls_insecure or c.tls_ca for c in cells):
        meta["tls"] = {
            "harness_servers": any(c.tls for c in cells),
            # A --target verified against the user's CA, or not verified at all.
            "target_ca": sorted({c.tls_ca for c in cells if c.tls_ca and not c.managed}),
            "target_insecure": any(c.tls_insecure for c in cells),
        }
        if meta["tls"]["target_insecure"]:
            console.print(
                "[bold yellow]wsbench: --insecure: the target's certificate is not "
                "verified[/bold yellow]"
            )
    meta["status"] = "running"
    write_json_atomically(out / "meta.json", meta)
    writer = ResultsWriter(out)
    probes: dict[str, Any] = {}
    ceilings: dict[tuple[int, str], Calibration] = {}
    console.print(
        f"wsbench: {len(cells)} runs into {out}, planned to take about "
        f"{format_duration(planned_run_s(cells))}"
    )
    try:
        await keepawake.start(awake_cpus)
        # Only cells whose rows are judged against the generator's ceiling need it measured.
        calibrated = [c for c in cells if uses_calibration(c)]
        for payload_bytes, payload_kind in sorted(
            {(c.payload_bytes, c.payload_kind) for c in calibrated}
        ):
            calibration = await calibrate(
                payload_bytes, payload_kind, pinning, out / "logs" / "calibration"
            )
            ceilings[(payload_bytes, payload_kind)] = calibration
            console.print(
                f"calibration: the generator drives {calibration.ceiling_msgs_s:,.0f} msgs/s "
                f"with a whole core ({payload_bytes} B {payload_kind}; measured "
                f"{statistics.median(calibration.rounds_msgs_s):,.0f} msgs/s at "
                f"{calibration.generator_cpu_pct:.0f}% CPU)"
            )
        meta["calibration"] = [c.as_dict() for c in ceilings.values()]
        write_json_atomically(out / "meta.json", meta)
        generator_cpus = max(1, len(pinning.generator_cpus))
        clusters = {(c.workers, c.cluster) for c in cells if c.cluster}
        async with contextlib.AsyncExitStack() as stack:
            if clusters:  # every --cluster cell has the same (bench.cli)
                shards, value = clusters.pop()
                scheduler = value if value.startswith("tcp://") else ""
                cluster = await stack.enter_async_context(running_cluster(shards, scheduler))
                meta["cluster"] = cluster.describe()
                write_json_atomically(out / "meta.json", meta)
            with suite_progress() as progress:
                finished = await _run_groups(
                    cells, out, pinning, ceilings, generator_cpus, writer, probes, progress,
                    fail_fast,
                )  # fmt: skip
        meta["status"] = "complete" if finished else "stopped (--fail-fast)"
    finally:
        await stop_all()
        if meta["status"] == "running":
            meta["status"] = "interrupted"
        meta["fairness_probes"] = probes
        meta["completed_cells"] = len(writer.rows)
        write_json_atomically(out / "meta.json", meta)
        report_error = _write_summary_and_report(out) if writer.rows else None
    failed = [r for r in writer.rows if r["status"] != "ok" or r["errors"]]
    console.print(f"wsbench: results in {out}/ (runs.csv, summary.csv, meta.json, report.html)")
    if failed:
        console.print(f"wsbench: {len(failed)} of {len(cells)} runs failed or had errors")
    return not failed and report_error is None


def _write_summary_and_report(out: Path) -> str | None:
    """Write summary.csv and report.html; the runs are safe in runs.csv whatever happens here,
    so a failure is one line (its traceback in logs/report-error.log), not a lost suite."""
    try:
        write_summary(out)
        write_report(out)
    except Exception as error:
        log = out / "logs" / "report-error.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(traceback.format_exc())
        console.print(
            f"[red]wsbench: could not write summary.csv/report.html: {escape(repr(error))} "
            f"(traceback in {log}); runs.csv is complete[/red]"
        )
        return repr(error)
    return None


async def _run_groups(
    cells: list[RunSpec],
    out: Path,
    pinning: Pinning,
    ceilings: dict[tuple[int, str], Calibration],
    generator_cpus: int,
    writer: ResultsWriter,
    probes: dict[str, Any],
    progress: Progress,
    fail_fast: bool = False,
) -> bool:
    """Run the cells group by group; False when ``fail_fast`` stopped it early."""
    # The bar moves by each run's planned seconds, so the remaining-time estimate weighs a
    # 30-s memory cell and a 3-s echo cell as they are.
    task = progress.add_task("starting", total=sum(planned_s(c) for c in cells))
    index = 0
    for group in run_groups(cells):
        others = f" (+{len(group) - 1} interleaved)" if len(group) > 1 else ""
        progress.update(
            task, description=f"[{index + 1}/{len(cells)}] {cell_label(group[0])}{others}"
        )
        first = index + 1
        run_ids = [run_id_for(first + i, cell) for i, cell in enumerate(group)]
        if len(group) > 1:
            results = await run_sliced(group, run_ids, out, pinning)
        else:  # alone: nothing to interleave with, so no slices
            cell = replace(group[0], slice_s=0.0)
            results = [await run_cell(cell, run_ids[0], out, pinning)]
        for result in results:
            index += 1
            cell = result.spec
            # The ceiling is the fast client's echo rate; library clients and the modes that
            # are not echo are judged by CPU alone.
            ceiling = ceilings.get((cell.payload_bytes, cell.payload_kind))
            if uses_calibration(cell) and ceiling:
                result.generator_ceiling_msgs_s = ceiling.ceiling_msgs_s
            result.generator_processes = min(cell.workers, generator_cpus)
            record = writer.append(result)
            if result.probe is not None:
                probes[cell.server] = result.probe.as_dict()
            console.print(_progress_line(index, len(cells), record))
        progress.advance(task, sum(planned_s(c) for c in group))
        if fail_fast and any(r["status"] != "ok" or r["errors"] for r in writer.rows):
            console.print(
                f"wsbench: --fail-fast: stopping after a failed run; {len(cells) - index} of "
                f"{len(cells)} runs not started"
            )
            return False
    return True


def rebuild_report(folder: Path) -> None:

    if not (folder / "runs.csv").is_file():
        raise UsageError(f"{folder} holds no runs.csv")
    write_summary(folder)
    write_report(folder)
    console.print(f"wsbench: wrote {folder / 'report.html'}")


def markdown_table(folder: Path) -> str:
    """The headline table from a folder's summary.csv (rebuilt first if missing)."""
    if not (folder / "runs.csv").is_file():
        raise UsageError(f"{folder} holds no runs.csv")
    if not (folder / "summary.csv").is_file():
        write_summary(folder)
    return reference_table(pd.read_csv(folder / "summary.csv"))


def compare_folders(old: Path, new: Path, force: bool, out: Path | None) -> Path:
    """Check the stamps, then write and print the per-cell deltas of two results folders: the
    CSV (``out``, default NEW/compare.csv) and the page next to it (its name with .html)."""
    path = out or new / "compare.csv"
    page_path = path.with_suffix(".html")
    if page_path == path:
        raise UsageError(f"--out {path} would be overwritten by the comparison page; use .csv")
    for folder in (old, new):
        if not (folder / "runs.csv").is_file():
            raise UsageError(f"{folder} holds no runs.csv")
    old_meta, new_meta = load_meta(old), load_meta(new)
    differences = stamp_differences(old_meta, new_meta)
    if differences and not force:
        raise UsageError(
            "the runs' environments differ in fields that move results ("
            + "; ".join(differences) + "); use --force to compare anyway"
        )  # fmt: skip
    for line in differences:
        console.print(f"[bold yellow]WARNING: environments differ: {line}[/bold yellow]")
    table = deltas(summarize(load_runs(old)), summarize(load_runs(new)))
    table.to_csv(path, index=False)
    page = render_compare_page(
        table,
        run_description(str(old), old_meta),
        run_description(str(new), new_meta),
        differences,
        force,
    )
    write_compare_page(page_path, page)
    for _, row in table.iterrows():
        console.print(
            f"{row['scenario']} {row['server']} {row['loop']} {row['mode']} {row['metric']}: "
            f"{row['old_median']:,.0f} -> {row['new_median']:,.0f} ({row['change_pct']:+.1f}%, "
            f"{row['verdict']})"
        )
    console.print(f"wsbench: {len(table)} comparisons in {path}")
    console.print(f"wsbench: comparison page in {page_path}")
    return path


async def run_calibration(
    payload_bytes: int,
    payload_kind: str,
    rounds: int,
    duration_s: float,
    out: Path,
    keep_cpus_awake: bool = True,
) -> Calibration:
    pinning = current_pinning()
    awake_cpus = cpus_to_keep_awake(pinning, keep_cpus_awake)
    try:
        await keepawake.start(awake_cpus)  # as in a suite, whose calibration this is
        calibration = await calibrate(
            payload_bytes, payload_kind, pinning, out / "logs", rounds=rounds, duration_s=duration_s
        )
    finally:
        await stop_all()
    meta = stamp(["wsbench", "calibrate"], _pinning_dict(pinning, awake_cpus), repo_root())
    meta["calibration"] = [calibration.as_dict()]
    write_json_atomically(out / "meta.json", meta)
    console.print(
        f"the generator drives {calibration.ceiling_msgs_s:,.0f} msgs/s with a whole core "
        f"({payload_bytes} B {payload_kind}; rounds measured: "
        f"{', '.join(f'{r:,.0f}' for r in calibration.rounds_msgs_s)} msgs/s "
        f"at {calibration.generator_cpu_pct:.0f}% of its core); echo server at "
        f"{calibration.echo_server_cpu_pct:.0f}%"
    )
    console.print(f"wsbench: results in {out}/meta.json")
    return calibration


# --- wsbench overhead ------------------------------------------------------------------------

OVERHEAD_COLUMNS = ["round", "client", "server", "msgs_s", "client_cpu_pct", "server_cpu_pct"]
OVERHEAD_WARMUP_S = 1.0


async def _one_client_run(
    module: str, plan: WorkerPlan, server: ManagedServer, pinning: Pinning, log_dir: Path
) -> dict[str, Any]:
    assert server.process is not None
    measured = await measure_solo(module, plan, server.process.pid, pinning, log_dir)
    answer = measured.answer
    messages = answer["messages"] if "messages" in answer else answer["received"]
    if "missing" in answer and answer["missing"] + answer["unexpected"]:
        raise RunFailed(f"the generator saw errors against {server.name}")
    return {
        "msgs_s": messages / plan.duration_s,
        "client_cpu_pct": measured.client.cpu_pct,
        "server_cpu_pct": measured.server.cpu_pct,
    }


async def run_overhead(
    server_name: str,
    rounds: int,
    duration_s: float,
    connections: int,
    payload: int,
    out: Path,
    keep_cpus_awake: bool = True,
) -> bool:
    pinning = current_pinning()
    awake_cpus = cpus_to_keep_awake(pinning, keep_cpus_awake)
    info = SERVERS[server_name]
    if info.protocol != "raw":
        raise UsageError("overhead compares raw WebSocket clients: pick a raw server")
    server = ManagedServer(
        server_name, "uvloop", frozenset(pinning.server_cpus), out / "server.log"
    )
    rows: list[dict[str, Any]] = []
    try:
        await keepawake.start(awake_cpus)
        await server.start()
        url = websocket_url(f"ws://{LOOPBACK}:{server.port}/", "raw")
        plan = WorkerPlan(
            url=url, protocol="raw", mode="closed", connections=connections,
            payload_bytes=payload, payload_kind="text", warmup_s=OVERHEAD_WARMUP_S,
            duration_s=duration_s,
        )  # fmt: skip
        clients = {"reference": "bench.load.reference", "wsbench": "bench.load.worker"}
        for round_index in range(1, rounds + 1):
            for client, module in clients.items():  # interleaved: A B A B
                figures = await _one_client_run(module, plan, server, pinning, out / "logs")
                rows.append(
                    {"round": round_index, "client": client, "server": server_name, **figures}
                )
                console.print(
                    f"round {round_index} {client:<9} {figures['msgs_s']:>9,.0f} msgs/s  "
                    f"client CPU {figures['client_cpu_pct']:>4.0f}%  "
                    f"server CPU {figures['server_cpu_pct']:>4.0f}%"
                )
    finally:
        await server.stop()
        await stop_all()
    with (out / "overhead.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=OVERHEAD_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    verdict = overhead_verdict(rows)
    write_json_atomically(out / "overhead.json", {**verdict, "cpus_kept_awake": sorted(awake_cpus)})
    console.print(
        f"wsbench/reference throughput: median ratio {verdict['throughput_ratio_median']:.3f} "
        f"(rounds: {', '.join(f'{r:.3f}' for r in verdict['throughput_ratios'])}); "
        f"generator CPU {verdict['wsbench_cpu_pct_median']:.0f}% vs server CPU "
        f"{verdict['server_cpu_pct_median']:.0f}% -> "
        + ("generator is not the bottleneck" if verdict["generator_below_server"] else
           "[yellow]generator may be the bottleneck[/yellow]")
    )  # fmt: skip
    console.print(f"wsbench: results in {out}/ (overhead.csv, overhead.json)")
    return True


def overhead_verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-round throughput ratio wsbench/reference and median CPU shares (pure)."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["client"]] = row
    ratios = [
        r["wsbench"]["msgs_s"] / r["reference"]["msgs_s"]
        for r in by_round.values()
        if "wsbench" in r and "reference" in r and r["reference"]["msgs_s"] > 0
    ]

    def median(client: str, column: str) -> float:
        values = [
            row[column] for row in rows if row["client"] == client and not math.isnan(row[column])
        ]
        return statistics.median(values) if values else math.nan

    wsbench_cpu = median("wsbench", "client_cpu_pct")
    server_cpu = median("wsbench", "server_cpu_pct")
    return {
        "throughput_ratios": ratios,
        "throughput_ratio_median": statistics.median(ratios) if ratios else math.nan,
        "wsbench_cpu_pct_median": wsbench_cpu,
        "reference_cpu_pct_median": median("reference", "client_cpu_pct"),
        "server_cpu_pct_median": server_cpu,
        "generator_below_server": wsbench_cpu < server_cpu,
    }
