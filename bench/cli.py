"""The ``wsbench`` command line: ``run``, ``report``, ``compare``, ``calibrate``, ``overhead``.

``main(argv)`` returns the exit code: 0 success, 2 bad input (one line on stderr), 3 a run
failed, 130 interrupted. Options are resolved into ``RunSpec`` cells before anything starts.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import fields as dataclass_fields
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from bench import modes, suite_run
from bench.catalog import LOOPS, SERVERS, raw_servers
from bench.errors import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, RunFailed, UsageError
from bench.gate.command import EXIT_GATE_FAILED, print_result, promote_baseline, run_check
from bench.gate.local_baseline import local_baseline
from bench.limits import socket_send_buffer_max
from bench.load.cluster import distributed_missing, parse_cluster, scheduler_workers
from bench.load.stacks import CLIENTS, FAST, only_client
from bench.modes import check_positive
from bench.plan_time import format_duration, planned_run_s
from bench.processes import repo_root
from bench.protocol.exchange import PAYLOAD_KINDS
from bench.redis_broker import check_redis_url
from bench.redis_broker import missing_reason as redis_missing_reason
from bench.runner import connection_budget
from bench.scenarios import (
    DEFAULT_SLICE_S,
    MAX_INFLIGHT,
    MAX_SECONDS,
    MAX_SERVER_WORKERS,
    SUITES,
    TRANSPORTS,
    check_inflight,
    check_payload,
    check_repeat,
    check_seconds,
    check_server_workers,
    check_slice,
    check_transport,
    entries_for_scenario,
    expand,
    load_suite,
)
from bench.server_cmd import check_label, check_program, default_label, parse_server_cmd
from bench.spec import SHIPPED, SHIPPED_MODES, TIERS, TLS_MODES, RunSpec
from bench.target import parse_networks, websocket_url
from servers.common import MAX_HANDICAP_LOOPS, MAX_HANDICAP_US

EXIT_INTERRUPTED = 130
# A run planned to take longer than this needs --allow-long-run (a mistyped --repeat or
# --duration would otherwise hold the machine for days).
MAX_UNCONFIRMED_S = 3600.0
RESULT_FILES = ("runs.csv", "histograms.jsonl", "summary.csv", "meta.json", "report.html")
DEFAULT_READY_TIMEOUT_S = RunSpec.ready_timeout_s


class _Parser(argparse.ArgumentParser):
    """argparse, but bad input is one line and exit code 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _number(kind: type[int] | type[float]) -> Any:
    def convert(text: str) -> int | float:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None

    convert.__name__ = kind.__name__
    return convert


def _add_let_cpus_idle(group: Any) -> None:
    group.add_argument(
        "--let-cpus-idle",
        action="store_true",
        help="no idle-priority busy loop on the pinned CPUs (default: keep them from halting, "
        "so that waking a halted virtual CPU is not measured)",
    )


_ADHOC_DEFAULTS: dict[str, Any] = {
    "mode": "closed",
    "connections": 10,
    "inflight": 1,
    "payload": 32,
    "payload_kind": "text",
    "duration": 10.0,
    "warmup": 2.0,
    "workers": 1,
}


def build_parser() -> _Parser:
    parser = _Parser(prog="wsbench", description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run a suite, a scenario, or an ad-hoc matrix")
    what = run.add_argument_group("what to run (a suite, a scenario, or the options below)")
    what.add_argument(
        "--suite", choices=SUITES, help="a scenario suite (TOML under bench/scenarios)"
    )
    what.add_argument(
        "--scenario",
        help="one scenario as the default suite runs it (with --target: its cells for the "
        "target's protocol; reconnect cannot run against a --target)",
    )  # fmt: skip
    what.add_argument("--servers", type=_csv_list, help=f"comma list of: {', '.join(SERVERS)}")
    what.add_argument(
        "--loops", type=_csv_list,
        help=f"comma list of: {', '.join(LOOPS)} (default uvloop; a server on none of them, "
        "such as Node's, runs once on its own)",
    )  # fmt: skip
    what.add_argument(
        "--mode",
        choices=modes.names(),
        help=", or ".join(m.help for m in modes.all_modes()),
    )  # fmt: skip
    # Each mode's own options, as its module declares them (bench.modes).
    for option in modes.all_options().values():
        if option.flag:
            what.add_argument(
                option.flag, dest=option.key, help=option.help,
                metavar=option.flag.lstrip("-").upper().replace("-", "_"),
                type=_csv_list if option.type is None else _number(option.type),
            )  # fmt: skip
    what.add_argument(
        "--connections", type=_number(int),
        help=f"connections (default {_ADHOC_DEFAULTS['connections']})",
    )  # fmt: skip
    what.add_argument(
        "--inflight",
        type=_number(int),
        help="closed loop: messages in flight per connection (default "
        f"{_ADHOC_DEFAULTS['inflight']}; at most {MAX_INFLIGHT:,}, and no more bytes than the "
        "kernel's socket send buffer holds)",
    )
    what.add_argument(
        "--payload", type=_number(int),
        help=f"payload bytes (default {_ADHOC_DEFAULTS['payload']})",
    )  # fmt: skip
    what.add_argument(
        "--payload-kind", choices=PAYLOAD_KINDS,
        help="text or binary frames, or json: chat-like JSON objects, in text frames "
        f"(default {_ADHOC_DEFAULTS['payload_kind']})",
    )  # fmt: skip
    what.add_argument(
        "--duration", type=_number(float),
        help=f"measured seconds (default {_ADHOC_DEFAULTS['duration']:g}; at most "
        f"{MAX_SECONDS:,.0f})",
    )  # fmt: skip
    what.add_argument(
        "--warmup", type=_number(float),
        help=f"discarded seconds before (default {_ADHOC_DEFAULTS['warmup']:g}; "
        + "; ".join(f"{m.name} {m.default_warmup_s:g}" for m in modes.all_modes()
                    if m.default_warmup_s is not None) + ")",
    )  # fmt: skip
    what.add_argument(
        "--repeat", type=_number(int),
        help="repeats of every cell, interleaved (default 1; a suite's own otherwise)",
    )  # fmt: skip
    what.add_argument(
        "--workers", type=_number(int),
        help=f"generator processes (default {_ADHOC_DEFAULTS['workers']})",
    )  # fmt: skip
    what.add_argument(
        "--cluster", metavar="local:N|tcp://HOST:PORT",
        help="run the generator as shards, each a task on its own Dask worker: N of a "
        "LocalCluster the run starts, or every worker (or --workers of them) of a scheduler "
        "you run (an optional extra: pip install 'wsbench[cluster]'; closed and open modes; "
        "such cells are not time-sliced)",
    )  # fmt: skip
    what.add_argument(
        "--server-workers", type=_number(int), metavar="N",
        help="run each server as N processes on one port (SO_REUSEPORT), broadcasts relayed "
        f"between them by Redis (default 1; at most {MAX_SERVER_WORKERS}; closed, open, "
        "connect and fanout modes; such cells are not time-sliced)",
    )  # fmt: skip
    what.add_argument(
        "--redis-url", metavar="URL",
        help="with several server processes: use this Redis (redis://HOST:PORT/DB on "
        "loopback) instead of a redis-server the harness starts for each cell",
    )  # fmt: skip
    what.add_argument(
        "--handicap-us", type=_number(float), metavar="N",
        help="servers burn N µs of CPU per echoed message: a known slowdown for testing a "
        "regression gate (recorded in every row and in meta.json)",
    )  # fmt: skip
    what.add_argument(
        "--handicap-loops", type=_number(int), metavar="N",
        help="the Python servers run N empty loop iterations per echoed message: the same "
        "extra work in every run, to test a gate on instruction counts (recorded in every row)",
    )  # fmt: skip
    what.add_argument(
        "--tier", choices=TIERS,
        help="equalised (default): the fairness contract (compression and pings off, Socket.IO "
        "over WebSocket only); shipped: each library's defaults with a browser-like client "
        "(it offers permessage-deflate; Socket.IO opens over long-polling, then upgrades); "
        "closed, open and memory modes",
    )  # fmt: skip
    what.add_argument(
        "--tls", action="store_true",
        help="every server over TLS (wss://) with a certificate made for the run, which the "
        "generator verifies (closed, open and connect modes; WebSocket only)",
    )  # fmt: skip
    what.add_argument(
        "--transport", choices=TRANSPORTS,
        help="Socket.IO servers: websocket (default), polling (HTTP long-polling only), or "
        "(connect mode) polling-upgrade, Socket.IO's default path: open over long-polling, "
        "then upgrade",
    )  # fmt: skip
    what.add_argument(
        "--ack", action="store_true",
        help="request/response: Socket.IO emits with an ack id and waits for the ack; raw "
        "servers' replies are matched by the id each message carries",
    )  # fmt: skip
    what.add_argument(
        "--slice", type=_number(float), dest="slice_s",
        help="closed loop: run the servers together, each loaded in turn for slices of this "
        f"many seconds (default {DEFAULT_SLICE_S:g}; 0 runs them one after another)",
    )  # fmt: skip
    what.add_argument(
        "--client", choices=CLIENTS,
        help=f"fast: the generator's own picows client (default {FAST}); library: websockets' "
        "and python-socketio's stock clients, to see the end-to-end cost users get (rows say "
        "which ran: connect, fan-out, memory and polling have the fast client only, reconnect "
        "the library clients only)",
    )  # fmt: skip
    target = run.add_argument_group("your own server: one someone else started, or its command")
    target.add_argument(
        "--target",
        help="ws://, http://, wss:// or https:// URL on a loopback address (or in "
        "an --allow-network network)",
    )
    target.add_argument(
        "--allow-network", metavar="CIDR[,CIDR]",
        help="let this run load --target hosts in these networks besides loopback (given each "
        "run, recorded in meta.json; load goes nowhere else)",
    )  # fmt: skip
    target.add_argument(
        "--ca", type=Path, metavar="FILE",
        help="a wss:// or https:// --target: verify its certificate against this CA file "
        "(without it: the system's trusted CAs)",
    )  # fmt: skip
    target.add_argument(
        "--insecure", action="store_true",
        help="a wss:// or https:// --target: do not verify its certificate at all (recorded "
        "in meta.json)",
    )  # fmt: skip
    target.add_argument(
        "--server-cmd", metavar="'ARGV with {port}'",
        help="start this command (split like a shell's, never run by one) on a free loopback "
        "port the harness puts where {port} is ({host}: 127.0.0.1), wait until the port "
        "accepts connections, pin, sample and stop it like the harness's own servers; every "
        "mode, reconnect included (it is killed and restarted on the same port)",
    )  # fmt: skip
    target.add_argument(
        "--protocol", choices=("raw", "socketio"),
        help="the --target's or --server-cmd's protocol",
    )  # fmt: skip
    target.add_argument(
        "--server-pid", type=_number(int), help="--target: sample this process's CPU and memory"
    )
    target.add_argument(
        "--label",
        help="name for the server in the results (default: its protocol; with --server-cmd, "
        "its script's or program's name)",
    )
    target.add_argument(
        "--ready-timeout", type=_number(float), metavar="S",
        help=f"--server-cmd: seconds its port may take to accept connections after each "
        f"start (default {DEFAULT_READY_TIMEOUT_S:g})",
    )  # fmt: skip
    output = run.add_argument_group("output")
    output.add_argument("--out", type=Path, help="results folder (default results/runs/<UTC time>)")
    output.add_argument("--force", action="store_true", help="write into a non-empty --out")
    _add_let_cpus_idle(output)
    output.add_argument(
        "--allow-long-run", action="store_true",
        help=f"run even when the plan takes more than {MAX_UNCONFIRMED_S / 60:.0f} minutes "
        "(default: refuse, saying how long it would take)",
    )  # fmt: skip
    output.add_argument(
        "--fail-fast", action="store_true",
        help="stop after the first run that fails or has errors (default: record it, go on)",
    )  # fmt: skip

    report = commands.add_parser("report", help="rebuild report.html from a results folder")
    report.add_argument("folder", type=Path)
    report.add_argument(
        "--markdown", action="store_true",
        help="print the headline figures as a Markdown table (the README's) instead",
    )  # fmt: skip

    compare = commands.add_parser(
        "compare", help="compare two results folders cell by cell (CSV and HTML page)"
    )
    compare.add_argument("old", type=Path)
    compare.add_argument("new", type=Path)
    compare.add_argument("--force", action="store_true", help="compare despite stamp differences")
    compare.add_argument(
        "--out",
        type=Path,
        help="CSV of deltas (default NEW/compare.csv); the page goes beside it, named .html",
    )

    check = commands.add_parser(
        "check", help="regression gate: a results folder against a baseline (exit 0 pass, 1 fail)"
    )
    check.add_argument("current", type=Path, help="results folder to check")
    check.add_argument("--baseline", type=Path, required=True, help="baseline results folder")
    check.add_argument(
        "--thresholds", type=Path, help="thresholds TOML (default results/thresholds.toml)"
    )
    local = commands.add_parser(
        "local-baseline",
        help="a baseline whose instruction counts compare with a run's: copied when counted "
        "on the same CPU and software, else its command measured again here on the commit that "
        "recorded it (exit 0 done, 2 bad input, 3 the measurement failed)",
    )
    local.add_argument("baseline", type=Path, help="committed baseline folder")
    local.add_argument("--like", type=Path, required=True, help="results folder to compare with")
    local.add_argument("--out", type=Path, required=True, help="folder for the baseline")
    local.add_argument("--force", action="store_true", help="replace a non-empty --out")
    baseline = commands.add_parser(
        "baseline", help="promote a results folder to the gate's baseline (results/baseline)"
    )
    baseline.add_argument("folder", type=Path)
    baseline.add_argument("--to", type=Path, help="destination (default results/baseline)")
    baseline.add_argument("--force", action="store_true", help="replace an existing baseline")

    calibration = commands.add_parser(
        "calibrate", help="measure the generator's own ceiling against a built-in echo server"
    )
    calibration.add_argument(
        "--payload", type=_number(int), default=32, help="payload bytes (default %(default)s)"
    )
    calibration.add_argument(
        "--payload-kind", choices=PAYLOAD_KINDS, default="text",
        help="text, binary or json (default %(default)s)",
    )  # fmt: skip
    calibration.add_argument(
        "--rounds", type=_number(int), default=3, help="measured rounds (default %(default)s)"
    )
    calibration.add_argument(
        "--duration", type=_number(float), default=3.0,
        help="seconds per round (default %(default)s)",
    )  # fmt: skip
    calibration.add_argument(
        "--out", type=Path, help="results folder (default results/runs/<UTC time>)"
    )
    calibration.add_argument("--force", action="store_true", help="write into a non-empty --out")
    _add_let_cpus_idle(calibration)

    overhead = commands.add_parser(
        "overhead", help="the generator against a minimal picows client, same server, same run"
    )
    overhead.add_argument(
        "--server", default="aiohttp", choices=raw_servers(),
        help="the server both clients load (default %(default)s)",
    )  # fmt: skip
    overhead.add_argument(
        "--rounds", type=_number(int), default=3,
        help="rounds, each client in turn (default %(default)s)",
    )  # fmt: skip
    overhead.add_argument(
        "--duration", type=_number(float), default=5.0,
        help="seconds per client and round (default %(default)s)",
    )  # fmt: skip
    overhead.add_argument(
        "--connections", type=_number(int), default=10, help="connections (default %(default)s)"
    )
    overhead.add_argument(
        "--payload", type=_number(int), default=32, help="payload bytes (default %(default)s)"
    )
    overhead.add_argument(
        "--out", type=Path, help="results folder (default results/runs/<UTC time>)"
    )
    overhead.add_argument("--force", action="store_true", help="write into a non-empty --out")
    _add_let_cpus_idle(overhead)
    return parser


# --- resolving options into cells ------------------------------------------------------------


def _adhoc_option(args: argparse.Namespace, name: str) -> Any:
    value = getattr(args, name)
    return _ADHOC_DEFAULTS[name] if value is None else value


def _validate_common(args: argparse.Namespace) -> None:
    for name in ("connections", "inflight", "workers"):
        value = getattr(args, name)
        if value is not None:
            check_positive(f"--{name}", value)
    if args.duration is not None:
        check_seconds("--duration", args.duration)
    if args.warmup is not None:
        check_seconds("--warmup", args.warmup, allow_zero=True)
    if args.repeat is not None:
        check_repeat("--repeat", args.repeat)
    if args.payload is not None:
        check_payload(args.payload, args.payload_kind or "text")
    elif args.payload_kind == "json":  # the default payload is too small for an object
        check_payload(_ADHOC_DEFAULTS["payload"], "json")
    if (
        args.workers is not None
        and args.connections is not None
        and args.workers > args.connections
    ):
        raise UsageError("--workers must not exceed --connections")


def resolve_cells(args: argparse.Namespace) -> list[RunSpec]:
    cells = _resolve_cells(args)
    handicap_us = getattr(args, "handicap_us", None)
    if handicap_us is not None:
        if args.target or args.server_cmd:
            raise UsageError(
                "--handicap-us slows the harness's own servers, not a --target or --server-cmd"
            )
        if not 0 < handicap_us <= MAX_HANDICAP_US:
            raise UsageError(f"--handicap-us must be above 0 and at most {MAX_HANDICAP_US:g}")
        cells = [replace(cell, handicap_us=float(handicap_us)) for cell in cells]
    handicap_loops = getattr(args, "handicap_loops", None)
    if handicap_loops is not None:
        if args.target or args.server_cmd:
            raise UsageError(
                "--handicap-loops slows the harness's own servers, not a --target or --server-cmd"
            )
        if not 0 < handicap_loops <= MAX_HANDICAP_LOOPS:
            raise UsageError(f"--handicap-loops must be above 0 and at most {MAX_HANDICAP_LOOPS:,}")
        if any(SERVERS[cell.server].runtime == "node" for cell in cells):
            raise UsageError(
                "--handicap-loops is for the Python servers (Node's JIT removes an empty loop): "
                "leave out node-ws and node-socketio with --servers"
            )
        cells = [replace(cell, handicap_loops=handicap_loops) for cell in cells]
    cells = _scale_out(cells, args)
    cells = _tier_and_tls(cells, args)
    cells = _cluster(cells, args)
    cells = _network(cells, args)
    send_buffer_bytes = socket_send_buffer_max()
    for cell in cells:
        connection_budget(cell)  # refuses, naming the limits, what the machine cannot hold
        if modes.get(cell.mode).closed_loop:
            where = "--inflight" if args.inflight is not None else f"{cell.scenario}: inflight"
            check_inflight(where, cell.inflight, cell.payload_bytes, send_buffer_bytes)
    planned_s = planned_run_s(cells)
    if planned_s > MAX_UNCONFIRMED_S and not getattr(args, "allow_long_run", False):
        raise UsageError(
            f"this run is planned to take about {format_duration(planned_s)}, more than "
            f"{format_duration(MAX_UNCONFIRMED_S)}: pass --allow-long-run to confirm"
        )
    return cells


def _scale_out(cells: list[RunSpec], args: argparse.Namespace) -> list[RunSpec]:
    """--server-workers (every cell, the suite's own count overridden) and --redis-url (the
    cells with several processes)."""
    workers = getattr(args, "server_workers", None)
    redis_url = getattr(args, "redis_url", None)
    if workers is not None:
        if args.target or args.server_cmd:
            raise UsageError(
                "--server-workers starts the harness's own servers, not a --target or --server-cmd"
            )
        for cell in cells:
            check_server_workers("--server-workers", workers, cell.mode, cell.transport)
        cells = [
            replace(cell, server_workers=workers, slice_s=cell.slice_s if workers == 1 else 0.0)
            for cell in cells
        ]
    if any(cell.broker_fault and cell.server_workers < 2 for cell in cells):
        raise UsageError(
            "broker-fault kills the broker between server processes: it needs "
            "--server-workers 2 or more"
        )
    if redis_url is not None:
        check_redis_url("--redis-url", redis_url)
        if not any(cell.server_workers > 1 for cell in cells):
            raise UsageError(
                "--redis-url relays broadcasts between server processes: it goes with "
                "--server-workers 2 or more, or a scale-out scenario"
            )
        if any(cell.broker_fault for cell in cells):
            raise UsageError(
                "broker-fault kills and restarts the broker: it must be the harness's own "
                "redis-server, not --redis-url"
            )
        cells = [replace(cell, redis_url=redis_url) if cell.server_workers > 1 else cell
                 for cell in cells]  # fmt: skip
    return cells


def _allowed_networks(args: argparse.Namespace) -> tuple[str, ...]:
    value = getattr(args, "allow_network", None)
    return () if value is None else parse_networks("--allow-network", value)


def _network(cells: list[RunSpec], args: argparse.Namespace) -> list[RunSpec]:
    """--allow-network: only for a --target or a --cluster tcp:// scheduler, which it lets
    lie beyond loopback."""
    networks = _allowed_networks(args)
    if not networks:
        return cells
    if getattr(args, "target", None) is None and not str(
        getattr(args, "cluster", None) or ""
    ).startswith("tcp://"):
        raise UsageError(
            "--allow-network lets a --target (or a --cluster tcp:// scheduler) lie beyond "
            "loopback: the harness's own servers and --server-cmd listen on loopback"
        )
    return [replace(cell, allow_network=networks) for cell in cells]


def _cluster(cells: list[RunSpec], args: argparse.Namespace) -> list[RunSpec]:
    """--cluster local:N or tcp://HOST:PORT: every cell's generator as Dask shards (N, or
    one per worker of the scheduler, or --workers of them), not time-sliced."""
    value = getattr(args, "cluster", None)
    if value is None:
        return cells
    choice = parse_cluster("--cluster", value, _allowed_networks(args))
    if choice.local_shards and args.workers is not None and args.workers != choice.local_shards:
        raise UsageError(
            f"--cluster {value} runs {choice.local_shards} generator shards: leave out --workers"
        )
    sharded = " and ".join(m.name for m in modes.all_modes() if m.sharded)
    for cell in cells:
        if not modes.get(cell.mode).sharded:
            raise UsageError(
                f"--cluster runs {sharded} modes only, not {cell.mode} "
                f"({cell.scenario or 'the command line'})"
            )
    missing = distributed_missing()
    if missing:
        raise UsageError(missing)
    if choice.scheduler:
        # One shard per worker of the scheduler, or on --workers of them.
        shards = args.workers or scheduler_workers(choice.scheduler)
        value = choice.scheduler
    else:
        shards = choice.local_shards
    return [replace(cell, cluster=value, workers=shards, slice_s=0.0) for cell in cells]


def _tier_and_tls(cells: list[RunSpec], args: argparse.Namespace) -> list[RunSpec]:
    """--tier and --tls for the harness's servers (every cell); --ca and --insecure for a
    wss:// --target."""
    tier, tls = getattr(args, "tier", None), getattr(args, "tls", False)
    ca, insecure = getattr(args, "ca", None), getattr(args, "insecure", False)
    if (tier is not None or tls) and (args.target or args.server_cmd):
        raise UsageError(
            "--tier and --tls set up the harness's own servers; a --target or --server-cmd "
            "runs as its owner configured it (a wss:// --target is measured over TLS)"
        )
    target_tls = bool(args.target) and str(args.target).startswith(("wss://", "https://"))
    if (ca is not None or insecure) and not target_tls:
        raise UsageError("--ca and --insecure go with a wss:// or https:// --target")
    if ca is not None and insecure:
        raise UsageError("--ca verifies the target's certificate, --insecure does not: pick one")
    if ca is not None and not ca.is_file():
        raise UsageError(f"--ca {ca}: no such file")
    if target_tls:
        return [replace(c, tls_ca=str(ca or ""), tls_insecure=insecure) for c in cells]
    if tier == SHIPPED:
        refused = sorted({c.mode for c in cells} - set(SHIPPED_MODES))
        if refused:
            raise UsageError(
                f"--tier shipped measures {', '.join(SHIPPED_MODES)} cells so far, "
                f"not {', '.join(refused)}"
            )
        if any(c.protocol == "socketio" and c.server_workers > 1 for c in cells):
            raise UsageError(
                "--tier shipped opens Socket.IO over long-polling, whose requests must all reach "
                "one process (sticky sessions), which several processes on one port do not give"
            )
        cells = [replace(c, tier=SHIPPED) for c in cells]
    if tls:
        refused = sorted({c.mode for c in cells} - set(TLS_MODES))
        if refused:
            raise UsageError(
                f"--tls measures {', '.join(TLS_MODES)} cells so far, not {', '.join(refused)}"
            )
        if any(c.transport != "websocket" for c in cells) or (
            tier == SHIPPED and any(c.protocol == "socketio" for c in cells)
        ):
            raise UsageError(
                "--tls runs over WebSocket only so far (the generator's long-polling client "
                "has no TLS): not with --transport polling, nor Socket.IO in --tier shipped"
            )
        cells = [replace(c, tls=True) for c in cells]
    return cells


def runnable(cells: list[RunSpec]) -> list[RunSpec]:
    """The cells whose servers can start on this machine; one line on stderr for each server
    left out, naming what to install. None left: bad input."""
    missing = {
        cell.server: why
        for cell in cells
        if cell.managed and (why := SERVERS[cell.server].missing()) is not None
    }
    for server, why in missing.items():
        count = sum(cell.server == server for cell in cells)
        print(f"wsbench: skipping {server}'s {count} cell(s): {why}", file=sys.stderr)
    kept = [cell for cell in cells if cell.server not in missing or not cell.managed]
    # Several processes: servers not built for it, and a broker that cannot start here.
    single = [c for c in kept if c.server_workers > 1 and not SERVERS[c.server].scales_out]
    for server in dict.fromkeys(c.server for c in single):
        count = sum(c.server == server for c in single)
        missing[server] = f"{server} does not run as several processes behind a broker yet"
        print(f"wsbench: skipping {server}'s {count} cell(s) with several server processes: "
              f"{missing[server]}", file=sys.stderr)  # fmt: skip
    kept = [c for c in kept if c not in single]
    # What a mode needs (instructions: valgrind), and servers a mode cannot measure.
    for mode in modes.all_modes():
        of_mode = [c for c in kept if c.mode == mode.name]
        why_not = mode.missing() if of_mode and mode.missing is not None else None
        if why_not:
            print(f"wsbench: skipping {len(of_mode)} {mode.name} cell(s): {why_not}",
                  file=sys.stderr)  # fmt: skip
            kept = [c for c in kept if c.mode != mode.name]
            missing[mode.name] = why_not
        judge = mode.server_refused
        refused = {c.server: why for c in of_mode if judge is not None and (why := judge(c))}
        for server, why in refused.items():
            print(f"wsbench: skipping {server}'s {mode.name} cell(s): {why}", file=sys.stderr)
            missing[server] = why
        kept = [c for c in kept if not (c.mode == mode.name and c.server in refused)]
    needs_redis = [c for c in kept if c.server_workers > 1 and not c.redis_url]
    if needs_redis and (why_not := redis_missing_reason()):
        print(f"wsbench: skipping {len(needs_redis)} cell(s) with several server processes: "
              f"{why_not}", file=sys.stderr)  # fmt: skip
        kept = [c for c in kept if c not in needs_redis]
        missing["redis-server"] = why_not
    if not kept:
        raise UsageError("no cell left to run: " + "; ".join(dict.fromkeys(missing.values())))
    return kept


def _resolve_cells(args: argparse.Namespace) -> list[RunSpec]:
    _validate_common(args)
    # "is not None": an empty --target or --scenario is bad input, not the ad-hoc default.
    if args.server_cmd is not None:
        return _server_cmd_cells(args)
    if args.ready_timeout is not None:
        raise UsageError("--ready-timeout goes with --server-cmd")
    if args.target is not None:
        return _target_cells(args)
    if args.protocol or args.server_pid or args.label:
        raise UsageError("--protocol, --server-pid and --label go with --target or --server-cmd")
    if args.suite and args.scenario is not None:
        raise UsageError("give --suite or --scenario, not both")
    if args.suite or args.scenario is not None:
        suite = load_suite(args.suite) if args.suite else None
        entries = list(suite.entries) if suite else entries_for_scenario(args.scenario)
        repeat = args.repeat or (suite.repeat if suite else 1)
        # --repeat applies to every cell; otherwise an entry may set its own repeat.
        cells = expand(entries, repeat, override_entries=args.repeat is not None)
        return _apply_overrides(cells, args)
    return _adhoc_cells(args)


def _apply_overrides(cells: list[RunSpec], args: argparse.Namespace) -> list[RunSpec]:
    """Suite cells narrowed by --servers/--loops and shortened by --duration/--warmup."""
    adhoc_only = (args.mode, args.payload, args.payload_kind, args.connections,
                  args.ack or None, args.transport,
                  *(getattr(args, key) for key in modes.all_options()
                    if hasattr(args, key)))  # fmt: skip
    if any(value is not None for value in adhoc_only):
        raise UsageError(
            "--mode, its options (--rate, --connect-rate, ...), --payload, --payload-kind, "
            "--connections, --ack and --transport define an ad-hoc matrix; leave out "
            "--suite/--scenario to use them"
        )
    _check_names(args)
    chosen = [
        cell
        for cell in cells
        if (not args.servers or cell.server in args.servers)
        and (not args.loops or cell.loop in args.loops)
    ]
    if not chosen:
        raise UsageError("no cell of the suite matches --servers/--loops")
    changes: dict[str, Any] = {}
    if args.duration is not None:
        changes["duration_s"] = float(args.duration)
    if args.warmup is not None:
        changes["warmup_s"] = float(args.warmup)
    if args.workers is not None:
        changes["workers"] = args.workers
    if args.client is not None:
        changes["client"] = args.client
    if args.slice_s is not None:
        check_slice("--slice", args.slice_s, "closed")
    return [
        RunSpec(**{**cell.as_dict(), **changes, **_slice_override(cell, args.slice_s)})
        for cell in chosen
    ]


def _slice_override(cell: RunSpec, slice_s: float | None) -> dict[str, float]:
    """--slice changes the closed-loop cells of a suite; open-loop cells never slice."""
    sliceable = modes.get(cell.mode).sliceable
    return {"slice_s": slice_s} if slice_s is not None and sliceable else {}


def _check_names(args: argparse.Namespace) -> None:
    for option in ("servers", "loops"):  # "--loops ''" would otherwise mean the default
        if getattr(args, option) == []:
            raise UsageError(f"--{option} is empty")
    for server in args.servers or []:
        if server not in SERVERS:
            raise UsageError(f"unknown server {server!r} (known: {', '.join(SERVERS)})")
    for loop in args.loops or []:
        if loop not in LOOPS:
            raise UsageError(f"unknown loop {loop!r} (known: {', '.join(LOOPS)})")


def _check_mode_and_rate(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Check the options that depend on the mode (its module declares them); returns the
    RunSpec fields they set."""
    mode = modes.get(name)
    only = only_client(name, args.transport or "websocket")
    if args.client is not None and only is not None and args.client != only:
        what = f"--mode {name}" if mode.stack is not None else "--transport polling"
        raise UsageError(f"{what} runs on the {only} client only")
    if args.target and mode.target_refused:
        raise UsageError(f"--mode {name} cannot run against --target: {mode.target_refused}")
    given = {key: getattr(args, key, None) for key in modes.all_options()}
    given.update(
        workers=args.workers, inflight=args.inflight, ack=args.ack,
        payload_kind=args.payload_kind, transport=args.transport,
        connections=args.connections, slice_s=args.slice_s,
    )  # fmt: skip
    fields = modes.check_options(mode, given, modes.Naming(flags=True))
    own = {k: v for k, v in fields.items() if k in _SPEC_FIELDS}
    params = tuple(sorted((k, v) for k, v in fields.items() if k not in _SPEC_FIELDS))
    return {**own, "params": params} if params else own


_SPEC_FIELDS = {f.name for f in dataclass_fields(RunSpec)}


def _adhoc_cells(args: argparse.Namespace) -> list[RunSpec]:
    _check_names(args)
    mode = _adhoc_option(args, "mode")
    mode_fields = _check_mode_and_rate(args, mode)
    entry = {
        "scenario": modes.get(mode).scenario,
        "servers": args.servers or list(SERVERS),
        "loops": args.loops or ["uvloop"],
        "mode": mode,
        "connections": _adhoc_option(args, "connections"),
        "inflight": _adhoc_option(args, "inflight"),
        "payload_bytes": _adhoc_option(args, "payload"),
        "payload_kind": _adhoc_option(args, "payload_kind"),
        "warmup_s": _adhoc_option(args, "warmup"),
        "duration_s": _adhoc_option(args, "duration"),
        "workers": _adhoc_option(args, "workers"),
    }
    entry.update({k: v for k, v in mode_fields.items() if k != "params"})
    if args.slice_s is not None:
        check_slice("--slice", args.slice_s, mode)
        entry["slice_s"] = args.slice_s
    if args.ack:
        entry["ack"] = True
    if args.transport is not None:
        entry["transport"] = args.transport
        check_transport(
            "--transport", args.transport, [SERVERS[s].protocol for s in entry["servers"]],
            [entry["payload_kind"]], args.ack, mode,
        )  # fmt: skip
    entry["warmup_s"] = _mode_warmup(args, mode)
    entry["duration_s"] = _mode_duration(args, mode)
    cells = expand([entry], args.repeat or 1, checked=True)
    client = args.client or "fast"
    return [
        RunSpec(**{**cell.as_dict(), "mode": mode, "client": client, **mode_fields})
        for cell in cells
    ]


def _target_cells(args: argparse.Namespace) -> list[RunSpec]:
    if args.suite or args.servers or args.loops or args.slice_s is not None:
        raise UsageError(
            "--target measures one server: leave out --suite, --servers, --loops, --slice"
        )
    if not args.protocol:
        raise UsageError("--target needs --protocol raw or --protocol socketio")
    # Refuses malformed URLs and hosts outside loopback and --allow-network now.
    websocket_url(args.target, args.protocol, _allowed_networks(args))
    if args.server_pid is not None:
        import psutil

        if not psutil.pid_exists(args.server_pid):
            raise UsageError(f"--server-pid {args.server_pid}: no such process")
    cells = _target_scenario_cells(args) if args.scenario is not None else _target_mode_cells(args)
    for cell in cells:
        if modes.get(cell.mode).uss and cell.server_pid is None:
            raise UsageError(
                f"{cell.mode} cells sample the server's memory: give the target's --server-pid"
            )
    return cells


def _server_cmd_cells(args: argparse.Namespace) -> list[RunSpec]:
    """The cells of a --server-cmd run: those a --target run of the same options would have,
    on the server the harness starts from the command (reconnect storms included)."""
    if (
        args.target is not None or args.suite or args.servers or args.loops
        or args.slice_s is not None or args.server_pid is not None
    ):  # fmt: skip
        raise UsageError(
            "--server-cmd measures the one server it starts: leave out --target, --suite, "
            "--servers, --loops, --slice, --server-pid"
        )
    if not args.protocol:
        raise UsageError("--server-cmd needs --protocol raw or --protocol socketio")
    command = parse_server_cmd(args.server_cmd)
    check_program(command)
    if args.label is not None:
        check_label(args.label)
        if args.label in SERVERS:
            raise UsageError(
                f"--label {args.label!r} is a server of the harness's registry: name yours "
                "otherwise, so that its rows are not taken for the reference server's"
            )
        label = args.label
    else:
        label = default_label(command, args.protocol)
        if label in SERVERS:
            label = f"{label}-cmd"
    ready_timeout_s = DEFAULT_READY_TIMEOUT_S
    if args.ready_timeout is not None:
        check_seconds("--ready-timeout", args.ready_timeout)
        ready_timeout_s = float(args.ready_timeout)
    if args.scenario is not None:
        cells = _target_scenario_cells(args, target=False)
    else:
        cells = _target_mode_cells(args)
    own = {"server": label, "server_cmd": command, "ready_timeout_s": ready_timeout_s}
    return [replace(cell, **own) for cell in cells]


def _target_scenario_cells(args: argparse.Namespace, target: bool = True) -> list[RunSpec]:
    """A scenario's cells as the default suite runs them, against the one --target server: its
    entries for the target's protocol, one cell per setting (not per server or loop).
    ``target``: a server someone else started, which some modes cannot run on."""
    entries = entries_for_scenario(args.scenario)
    for entry in entries:
        refused = modes.get(entry["mode"]).target_refused
        if target and refused:
            raise UsageError(f"scenario {args.scenario!r} cannot run against --target: {refused}")
    fitting = [
        {**entry, "servers": [server], "loops": entry.get("loops", ["uvloop"])[:1], "slice_s": 0}
        for entry in entries
        for server in [s for s in entry["servers"] if SERVERS[s].protocol == args.protocol][:1]
    ]
    if not fitting:
        raise UsageError(f"scenario {args.scenario!r} has no cells for a {args.protocol} server")
    repeat = args.repeat or 1
    cells = _apply_overrides(
        expand(fitting, repeat, override_entries=args.repeat is not None), args
    )
    external = {"server": args.label or args.protocol, "loop": "external",
                "target_url": args.target, "server_pid": args.server_pid}  # fmt: skip
    return [replace(cell, **external) for cell in cells]


def _target_mode_cells(args: argparse.Namespace) -> list[RunSpec]:
    if args.transport is not None:
        kind = args.payload_kind or "text"
        check_transport(
            "--transport", args.transport, [args.protocol], [kind], args.ack,
            _adhoc_option(args, "mode"),
        )  # fmt: skip
    mode = _adhoc_option(args, "mode")
    mode_fields = _check_mode_and_rate(args, mode)
    cell = RunSpec(
        scenario=modes.get(mode).scenario,
        server=args.label or args.protocol,
        protocol=args.protocol,
        loop="external",
        mode=mode,
        connections=_adhoc_option(args, "connections"),
        payload_bytes=_adhoc_option(args, "payload"),
        payload_kind=_adhoc_option(args, "payload_kind"),
        warmup_s=_mode_warmup(args, mode),
        duration_s=_mode_duration(args, mode),
        inflight=_adhoc_option(args, "inflight"),
        workers=_adhoc_option(args, "workers"),
        ack=args.ack,
        transport=args.transport or "websocket",
        client=args.client or "fast",
        target_url=args.target,
        server_pid=args.server_pid,
    )
    fields = {**cell.as_dict(), **mode_fields}
    return [RunSpec(**{**fields, "repeat": r}) for r in range(1, (args.repeat or 1) + 1)]


def _mode_warmup(args: argparse.Namespace, mode: str) -> float:
    default = modes.get(mode).default_warmup_s
    if args.warmup is None and default is not None:
        return default
    return float(_adhoc_option(args, "warmup"))


def _mode_duration(args: argparse.Namespace, mode: str) -> float:
    default = modes.get(mode).default_duration_s
    if args.duration is None and default is not None:
        return default
    return float(_adhoc_option(args, "duration"))


def output_folder(out: Path | None, force: bool) -> Path:
    if out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = Path("results") / "runs" / stamp
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"--out {out} is not empty (use --force to write into it)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        # --force: this run's results replace an earlier run's (appending rows to a CSV of
        # other columns would corrupt it); its logs stay beside them.
        for name in RESULT_FILES:
            (out / name).unlink(missing_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror}") from exc
    return out


# --- running ---------------------------------------------------------------------------------


def _run_with_signals(coroutine: Any) -> Any:
    """Run the coroutine; SIGINT/SIGTERM cancel it, so its ``finally`` blocks stop children."""

    async def guarded() -> Any:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        return await coroutine

    return asyncio.run(guarded())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "run":
            # Checked in full first, so bad input is one line whatever this machine lacks;
            # then the cells whose servers cannot start here are left out, saying why.
            cells = runnable(resolve_cells(args))
            out = output_folder(args.out, args.force)
            ok = _run_with_signals(
                suite_run.run_suite(
                    cells,
                    out,
                    ["wsbench", *argv],
                    fail_fast=args.fail_fast,
                    keep_cpus_awake=not args.let_cpus_idle,
                )
            )
            return 0 if ok else EXIT_RUN_FAILED
        if args.command == "report":
            if args.markdown:
                print(suite_run.markdown_table(args.folder), end="")
            else:
                suite_run.rebuild_report(args.folder)
            return 0
        if args.command == "compare":
            suite_run.compare_folders(args.old, args.new, args.force, args.out)
            return 0
        if args.command == "check":
            result = run_check(args.current, args.baseline, args.thresholds)
            print_result(result)
            return EXIT_OK if result.passed else EXIT_GATE_FAILED
        if args.command == "local-baseline":
            print(f"wsbench: {local_baseline(args.baseline, args.like, args.out, args.force)}")
            return 0
        if args.command == "baseline":
            destination = args.to or repo_root() / "results" / "baseline"
            promote_baseline(args.folder, destination, args.force)
            print(f"wsbench: baseline in {destination}")
            return 0
        if args.command == "calibrate":
            check_positive("--rounds", args.rounds)
            check_positive("--duration", args.duration)
            check_payload(args.payload, args.payload_kind)
            out = output_folder(args.out, args.force)
            _run_with_signals(
                suite_run.run_calibration(
                    args.payload,
                    args.payload_kind,
                    args.rounds,
                    args.duration,
                    out,
                    keep_cpus_awake=not args.let_cpus_idle,
                )
            )
            return 0
        if args.command == "overhead":
            for name in ("rounds", "duration", "connections"):
                check_positive(f"--{name}", getattr(args, name))
            check_payload(args.payload)
            out = output_folder(args.out, args.force)
            ok = _run_with_signals(
                suite_run.run_overhead(
                    args.server,
                    args.rounds,
                    args.duration,
                    args.connections,
                    args.payload,
                    out,
                    keep_cpus_awake=not args.let_cpus_idle,
                )
            )
            return 0 if ok else EXIT_RUN_FAILED
    except UsageError as exc:
        print(f"wsbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RunFailed as exc:
        print(f"wsbench: run failed: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("wsbench: interrupted; every process it started was stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        # A bug in the harness: one line for the user, the traceback in a file, exit 3.
        with tempfile.NamedTemporaryFile(
            "w", prefix="wsbench-error-", suffix=".log", delete=False
        ) as stream:
            stream.write(traceback.format_exc())
        print(f"wsbench: internal error: {exc!r} (traceback in {stream.name})", file=sys.stderr)
        return EXIT_RUN_FAILED
    return EXIT_USAGE
