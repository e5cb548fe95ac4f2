"""The verdict: one sentence per question users ask, computed from summary.csv (pure).

Every figure a sentence states is a cell of summary.csv, named by its row and column, so a
reader (and a test) can trace each number to the table. The wording follows the figures: a
Socket.IO/raw ratio whose 95% interval includes 1 makes the stacks indistinguishable there; a
cell measured once has no interval, and the sentence says so instead of ranking. Questions
whose scenario is not in the run say "not measured in this run", so the page keeps working as
scenarios come and go.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from bench import modes
from bench.catalog import SERVERS

Side = Literal["raw", "socketio", "neither", "mixed", "unmeasured"]
PREFERRED_LOOP = "uvloop"


@dataclass(frozen=True)
class Figure:
    """A number quoted from summary.csv: ``summary.loc[row, column]``, shown in ``unit``."""

    row: int
    column: str
    value: float
    unit: str

    @property
    def text(self) -> str:
        return format_value(self.value, self.unit)


Part = str | Figure


@dataclass
class Verdict:
    key: str  # anchor on the page: verdict-<key>
    question: str
    parts: list[Part] = field(default_factory=list)
    chart: str | None = None  # the chart the figures come from (anchor), if any
    favours: Side = "unmeasured"
    # Why a reader would pick the favoured stack, as a list item ("throughput per process...").
    reason: str = ""
    # Some pairs were indistinguishable while the others favoured one side.
    partly: bool = False

    @property
    def figures(self) -> list[Figure]:
        return [part for part in self.parts if isinstance(part, Figure)]


def format_value(value: float, unit: str) -> str:
    """How the report writes a figure of a given unit (one place, used by page and tests)."""
    if math.isnan(value):
        return "n/a"
    if unit == "us":
        if value >= 1_000_000:  # ".3g" would write 1,020 ms as 1.02e+03
            return f"{value / 1000:,.0f} ms"
        return f"{value / 1000:,.3g} ms" if value >= 1000 else f"{value:,.0f} µs"
    if unit == "ratio":
        return f"{value:.2f}"
    if unit == "KiB":
        return f"{value:,.1f} KiB"
    if unit == "s":
        return f"{value:,.2f} s"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "ms":
        return f"{value:g} ms"
    if unit == "MiB":
        return f"{value:,.1f} MiB"
    if unit == "":
        return f"{value:,.0f}"
    return f"{value:,.0f} {unit}"


# --- Picking cells ----------------------------------------------------------------------------


def _equal(column: pd.Series, value: object) -> pd.Series:
    if isinstance(value, float) and math.isnan(value):
        return column.isna()
    return column == value


def _where(summary: pd.DataFrame, **equals: object) -> pd.DataFrame:
    mask = pd.Series(True, index=summary.index)
    for name, value in equals.items():
        if name not in summary.columns:
            return summary.iloc[0:0]
        mask &= _equal(summary[name], value)
    return summary[mask]


def _narrow(
    rows: pd.DataFrame, column: str, choose: Callable[[list[object]], object]
) -> pd.DataFrame:
    """Keep the rows whose ``column`` has the value ``choose`` picks among those present."""
    if rows.empty or column not in rows.columns:
        return rows
    values = sorted(
        {v for v in rows[column] if not (isinstance(v, float) and math.isnan(v))}, key=str
    )
    if not values:
        return rows
    return rows[_equal(rows[column], choose(values))]


def _prefer(preferred: object) -> Callable[[list[object]], object]:
    return lambda values: preferred if preferred in values else values[0]


def preferred_loop(server: str, loops: list[object]) -> object:
    """The loop a server's cells are quoted on: uvloop where it runs on it, else its own
    (Node's libuv), else the first present."""
    info = SERVERS.get(server)
    own = info.loops if info else (PREFERRED_LOOP,)
    for loop in (PREFERRED_LOOP, *own) if PREFERRED_LOOP in own else own:
        if loop in loops:
            return loop
    return loops[0]


def _per_server_loop(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty or "loop" not in rows.columns:
        return rows
    keep = pd.Series(False, index=rows.index)
    for server in set(rows["server"].astype(str)):
        mine = rows["server"].astype(str) == server
        loop = preferred_loop(server, sorted(set(rows.loc[mine, "loop"]), key=str))
        keep |= mine & _equal(rows["loop"], loop)
    return rows[keep]


def _one_per_server(rows: pd.DataFrame) -> pd.DataFrame:
    """The cells to quote, one per server, in the catalog's order: the preferred loop, the
    smallest text payload, the fewest connections (fixed rules, so no result picks itself)."""
    rows = _per_server_loop(rows)
    rows = _narrow(rows, "client", _prefer("fast"))
    rows = _narrow(rows, "payload_kind", _prefer("text"))
    rows = _narrow(rows, "payload_bytes", min)  # type: ignore[arg-type]
    rows = _narrow(rows, "connections", min)  # type: ignore[arg-type]
    rows = rows.drop_duplicates("server")
    order = {name: i for i, name in enumerate(SERVERS)}
    return rows.iloc[sorted(range(len(rows)), key=lambda i: order.get(rows["server"].iloc[i], 99))]


def _figure(row: pd.Series, column: str, unit: str) -> Figure:
    value = row[column] if column in row.index else math.nan
    return Figure(int(str(row.name)), column, float(value), unit)


def _setting(rows: pd.DataFrame) -> list[Part]:
    """``32-byte text messages, 10 connections, uvloop``, its numbers quoted from the cell."""
    first = rows.iloc[0]
    return [
        _figure(first, "payload_bytes", ""),
        f"-byte {first['payload_kind']} messages, ",
        _figure(first, "connections", ""),
        f" connections, {first['loop']}",
    ]


# --- Judging a Socket.IO/raw pair -------------------------------------------------------------


def judge(median: float, low: float, high: float, higher_is_better: bool) -> Side | None:
    """Which stack a Socket.IO/raw ratio favours; None when there is no interval to judge by."""
    if any(math.isnan(v) for v in (median, low, high)) or low == high:
        return None
    if low <= 1.0 <= high:
        return "neither"
    socketio_better = (median > 1.0) == higher_is_better
    return "socketio" if socketio_better else "raw"


def _overall(sides: Iterable[Side | None]) -> Side:
    """One side when every pair that could be told apart went that way (the others being
    indistinguishable); "mixed" when pairs went opposite ways."""
    judged = {side for side in sides if side is not None}
    if not judged:
        return "unmeasured"
    if len(judged) == 1:
        return judged.pop()
    decided = judged - {"neither"}
    return decided.pop() if len(decided) == 1 else "mixed"


def _pair_clauses(
    cells: pd.DataFrame, prefix: str, higher_is_better: bool, what: str
) -> tuple[list[Part], list[Side | None]]:
    """``socketio-x / x: ratio R [low, high], <wording>`` for each Socket.IO cell whose raw
    counterpart was measured."""
    parts: list[Part] = []
    sides: list[Side | None] = []
    for _, row in cells.iterrows():
        info = SERVERS.get(str(row["server"]))
        if info is None or info.raw_counterpart is None:
            continue
        raw = info.raw_counterpart
        base = f"{prefix}_ratio_vs_{raw}"
        if f"{base}_median" not in row.index or math.isnan(float(row[f"{base}_median"])):
            continue
        median, low, high = (float(row[f"{base}_{s}"]) for s in ("median", "ci_low", "ci_high"))
        side = judge(median, low, high, higher_is_better)
        sides.append(side)
        parts += [f" {info.name}/{raw} {what} ratio ", _figure(row, f"{base}_median", "ratio")]
        if side is None:
            parts.append(" (one pass: no interval, no ranking claimed)")
            parts.append(";")
            continue
        parts += [" [", _figure(row, f"{base}_ci_low", "ratio"), ", "]
        parts += [_figure(row, f"{base}_ci_high", "ratio"), "]", _basis_note(row, base)]
        if side == "neither":
            parts.append(": the interval includes 1, indistinguishable;")
        else:
            parts.append(f": {'Socket.IO' if side == 'socketio' else 'plain WebSockets'} better;")
    return parts, sides


def _values(cells: pd.DataFrame, column: str, unit: str) -> list[Part]:
    """``server figure, server figure, ...`` for the cells' ``column``."""
    parts: list[Part] = []
    for i, (_, row) in enumerate(cells.iterrows()):
        parts += [(", " if i else "") + f"{row['server']} ", _figure(row, column, unit)]
    return parts


def _generator_caveat(cells: pd.DataFrame) -> list[Part]:
    """`` Runs flagged client_bound (...): aiohttp 2 of 3, ...`` for the quoted cells whose runs the
    generator may have limited (nothing when none was flagged): their figure is then a lower
    bound for that server, and a ratio against it leans its way."""
    if "client_bound_runs" not in cells.columns:
        return []
    flagged = cells[cells["client_bound_runs"].fillna(0) > 0]
    if flagged.empty:
        return []
    parts: list[Part] = [" Runs flagged client_bound (the generator may have limited them): "]
    for i, (_, row) in enumerate(flagged.iterrows()):
        parts += [(", " if i else "") + f"{row['server']} ", _figure(row, "client_bound_runs", "")]
        parts += [" of ", _figure(row, "repeats", "")]
    parts.append(".")
    return parts


def _finish(verdict: Verdict, sides: list[Side | None], reason_raw: str, reason_sio: str) -> None:
    verdict.favours = _overall(sides)
    verdict.partly = verdict.favours in ("raw", "socketio") and "neither" in sides
    last = verdict.parts[-1] if verdict.parts else None
    if isinstance(last, str) and not last.endswith("."):
        verdict.parts[-1] = last.rstrip(";") + "."
    verdict.reason = {"raw": reason_raw, "socketio": reason_sio}.get(verdict.favours, "")
    if verdict.favours == "unmeasured" and verdict.parts:
        verdict.favours = "neither"


def _unmeasured(verdict: Verdict) -> Verdict:
    verdict.parts = ["Not measured in this run."]
    verdict.favours = "unmeasured"
    return verdict


# --- The questions ----------------------------------------------------------------------------


def _throughput(summary: pd.DataFrame) -> Verdict:
    verdict = Verdict(
        "throughput", "How many messages per second does one process serve?", chart="chart-payload"
    )
    cells = _one_per_server(_where(summary, scenario="echo", mode="closed", transport="websocket"))
    if cells.empty:
        return _unmeasured(verdict)
    verdict.parts = ["Closed-loop echo (", *_setting(cells), "): "]
    verdict.parts += [*_values(cells, "throughput_median", "msgs/s"), "."]
    clauses, sides = _pair_clauses(cells, "throughput", True, "throughput")
    verdict.parts += clauses
    _finish(
        verdict,
        sides,
        "you need the most messages per second from one process",
        "you need the most messages per second from one process",
    )
    verdict.parts += _generator_caveat(cells)
    return verdict


def _ratio_parts(row: pd.Series, base: str) -> tuple[list[Part], tuple[float, float] | None]:
    """``R [low, high]`` (or ``R (one pass: no interval)``) for a ratio column family, and the
    interval when there is one."""
    parts: list[Part] = [_figure(row, f"{base}_median", "ratio")]
    low, high = (float(row[f"{base}_{s}"]) for s in ("ci_low", "ci_high"))
    if math.isnan(low) or math.isnan(high) or low == high:
        return [*parts, " (one pass: no interval)"], None
    parts += [" [", _figure(row, f"{base}_ci_low", "ratio"), ", "]
    high_part = _figure(row, f"{base}_ci_high", "ratio")
    return [*parts, high_part, "]", _basis_note(row, base)], (low, high)


def _basis_note(row: pd.Series, base: str) -> str:
    """Says so when a throughput ratio's interval is over the rounds of one time-sliced pass
    (summary.csv's ``throughput_ratio_interval_over``), not over repeats."""
    if base.startswith("throughput_") and row.get("throughput_ratio_interval_over") == "rounds":
        return " (over the rounds of one time-sliced pass)"
    return ""


def _protocol_cost(summary: pd.DataFrame) -> Verdict:
    """Socket.IO's own Node.js implementation against its raw server (ws) measures what the
    protocol costs; python-socketio against its raw counterpart measures protocol plus
    implementation: the difference is the implementation's."""
    verdict = Verdict(
        "protocol-cost",
        "How much of Socket.IO's cost is the protocol, and how much the Python implementation?",
        chart="chart-payload",
    )
    cells = _one_per_server(_where(summary, scenario="echo", mode="closed", transport="websocket"))
    pairs: dict[str, list[tuple[pd.Series, str, str]]] = {"node": [], "python": []}
    for _, row in cells.iterrows():
        info = SERVERS.get(str(row["server"]))
        raw = info.raw_counterpart if info else None
        base = f"throughput_ratio_vs_{raw}"
        if info is None or raw is None or f"{base}_median" not in row.index:
            continue
        if not math.isnan(float(row[f"{base}_median"])):
            pairs[info.runtime].append((row, base, f"{info.name}/{raw}"))
    if not pairs["node"] or not pairs["python"]:
        verdict.parts = [
            "Not measured in this run: it needs node-socketio and node-ws beside a Python "
            "Socket.IO server and its raw counterpart (closed-loop echo)."
        ]
        return verdict
    row, base, name = pairs["node"][0]
    node_parts, node_interval = _ratio_parts(row, base)
    verdict.parts = [
        "Closed-loop echo (", *_setting(cells), "; Node on libuv): Socket.IO's own Node.js "
        "implementation has a throughput ratio of ", *node_parts, f" to its raw server "
        f"({name}), which is what the protocol itself costs (two framing layers, JSON, "
        "events); python-socketio has",
    ]  # fmt: skip
    sides: list[Side | None] = []
    for index, (row, base, name) in enumerate(pairs["python"]):
        parts, interval = _ratio_parts(row, base)
        verdict.parts += [" and" if index else "", " ", *parts, f" ({name})"]
        if interval is None or node_interval is None:
            sides.append(None)
        elif interval[1] < node_interval[0]:
            sides.append("raw")
        elif interval[0] > node_interval[1]:
            sides.append("socketio")
        else:
            sides.append("neither")
    judged = {side for side in sides if side is not None}
    if not judged:
        verdict.parts.append(": no intervals to tell them apart, so no claim on how they differ.")
    elif judged == {"raw"}:
        verdict.parts.append(
            ": a smaller share than Socket.IO keeps on Node, with the intervals apart, so "
            "most of python-socketio's cost is its implementation, not the protocol."
        )
    elif judged == {"neither"}:
        verdict.parts.append(
            ": its intervals overlap Node's, so its cost is the protocol's, not its own."
        )
    else:
        verdict.parts.append(": the pairs do not agree on where the cost lies.")
    verdict.favours = "neither"
    verdict.parts += _generator_caveat(cells)
    return verdict


def _latency(summary: pd.DataFrame) -> Verdict:
    verdict = Verdict("latency", "What latency do clients see at a given load?", chart="chart-rate")
    rows = _where(summary, scenario="echo", mode="open", transport="websocket")
    rows = _narrow(rows, "target_rate", min)  # type: ignore[arg-type]
    cells = _one_per_server(rows)
    if cells.empty:
        return _unmeasured(verdict)
    verdict.parts = [
        "Open loop at ",
        _figure(cells.iloc[0], "target_rate", ""),
        " messages/s offered (",
        *_setting(cells),
        "), p99 from each message's intended send time: ",
    ]
    verdict.parts += [*_values(cells, "p99_median", "us"), "."]
    clauses, sides = _pair_clauses(cells, "p99", False, "p99")
    verdict.parts += clauses
    _finish(
        verdict,
        sides,
        "tail latency under a steady load matters",
        "tail latency under a steady load matters",
    )
    verdict.parts += _generator_caveat(cells)
    return verdict


def _capacity(summary: pd.DataFrame) -> Verdict:
    verdict = Verdict(
        "capacity", "What rate does one process sustain under a p99 target?", chart="chart-rate"
    )
    rows = _where(summary, mode="capacity")
    if rows.empty or "capacity_msgs_s_median" not in rows.columns:
        return _unmeasured(verdict)
    verdict.parts = [
        "Highest open-loop rate with p99 under ",
        _figure(rows.iloc[0], "slo_p99_ms_median", "ms"),
        " and no errors: ",
    ]
    order = {name: i for i, name in enumerate(SERVERS)}
    ordered = sorted(rows.index, key=lambda i: (order.get(str(rows.loc[i, "server"]), 99), i))
    for n, index in enumerate(ordered):
        row = rows.loc[index]
        verdict.parts += [(", " if n else "") + f"{row['server']} ({row['loop']}) "]
        verdict.parts.append(_figure(row, "capacity_msgs_s_median", "msgs/s"))
    verdict.parts.append(" (each search is one figure; repeats are listed separately).")
    verdict.favours = "neither"
    return verdict


def _memory(summary: pd.DataFrame) -> Verdict:
    verdict = Verdict(
        "memory", "How much memory does each idle connection cost?", chart="chart-memory"
    )
    cells = _one_per_server(_where(summary, mode="memory"))
    if cells.empty:
        return _unmeasured(verdict)
    verdict.parts = ["Slope of server memory (RSS) against open idle connections: "]
    sides: list[Side | None] = []
    for i, (_, row) in enumerate(cells.iterrows()):
        verdict.parts += [(", " if i else "") + f"{row['server']} "]
        verdict.parts += [_figure(row, "mem_kib_per_conn_median", "KiB"), " ["]
        verdict.parts += [_figure(row, "mem_kib_per_conn_ci_low", "KiB"), ", "]
        verdict.parts += [_figure(row, "mem_kib_per_conn_ci_high", "KiB"), "]"]
    verdict.parts.append(" per connection.")
    clauses, pair_sides = _pair_clauses(cells, "mem_kib_per_conn", False, "memory")
    if any(side is not None for side in pair_sides):
        verdict.parts += clauses
        sides = pair_sides
    else:  # one pass each: the fits' own intervals decide, pair by pair
        sides = list(_fit_interval_sides(cells))
        if sides:
            verdict.parts.append(
                " Judged by the fits' own 95% intervals (one pass each): "
                + "; ".join(_side_words(cells, sides))
                + "."
            )
    _finish(
        verdict,
        sides,
        "you hold many idle connections per process",
        "you hold many idle connections per process",
    )
    return verdict


def _fit_interval_sides(cells: pd.DataFrame) -> Iterable[Side | None]:
    by_server = {str(row["server"]): row for _, row in cells.iterrows()}
    for name, row in by_server.items():
        raw = SERVERS[name].raw_counterpart if name in SERVERS else None
        if raw is None or raw not in by_server:
            continue
        other = by_server[raw]
        low, high = float(row["mem_kib_per_conn_ci_low"]), float(row["mem_kib_per_conn_ci_high"])
        raw_low = float(other["mem_kib_per_conn_ci_low"])
        raw_high = float(other["mem_kib_per_conn_ci_high"])
        if any(math.isnan(v) for v in (low, high, raw_low, raw_high)):
            yield None
        elif low > raw_high:
            yield "raw"
        elif high < raw_low:
            yield "socketio"
        else:
            yield "neither"


def _side_words(cells: pd.DataFrame, sides: list[Side | None]) -> list[str]:
    pairs = [
        (name, SERVERS[name].raw_counterpart)
        for name in cells["server"]
        if name in SERVERS and SERVERS[name].raw_counterpart in set(cells["server"])
    ]
    words = {
        "raw": "plain WebSockets use less",
        "socketio": "Socket.IO uses less",
        "neither": "the intervals overlap",
        None: "no interval",
    }
    return [
        f"{name} vs {raw}: {words[side]}" for (name, raw), side in zip(pairs, sides, strict=False)
    ]


def _connect(summary: pd.DataFrame) -> Verdict:
    verdict = Verdict("connect", "How fast are connections set up?", chart="chart-connect")
    rows = _where(summary, mode="connect", transport="websocket")
    full_speed = rows[rows["target_conns_s"].isna() | (rows["target_conns_s"] == 0)]
    cells = _one_per_server(full_speed)
    if cells.empty:
        return _unmeasured(verdict)
    verdict.parts = [
        "Connect storm at full speed, TCP connect to first usable message (WebSocket only): "
    ]
    verdict.parts += _values(cells, "connects_median", "connections/s")
    verdict.parts += ["; p99 set-up time ", *_values(cells, "connect_p99_median", "us"), "."]
    clauses, sides = _pair_clauses(cells, "connects", True, "connections/s")
    verdict.parts += clauses
    default_path = _one_per_server(
        _where(summary, mode="connect", transport="polling-upgrade").pipe(
            lambda r: r[r["target_conns_s"].isna() | (r["target_conns_s"] == 0)]
        )
    )
    if not default_path.empty:
        verdict.parts += [" Socket.IO's default path (long-polling, then upgrade): "]
        verdict.parts += [*_values(default_path, "connects_median", "connections/s"), "."]
    _finish(
        verdict, sides, "clients connect often or in bursts", "clients connect often or in bursts"
    )
    return verdict


def _fanout(summary: pd.DataFrame) -> Verdict:
    verdict = Verdict(
        "fanout", "How quickly does a broadcast reach every receiver?", chart="chart-fanout"
    )
    rows = _where(summary, scenario="fanout")
    rows = _narrow(rows, "connections", max)  # type: ignore[arg-type]
    cells = _one_per_server(rows)
    if cells.empty:
        return _unmeasured(verdict)
    verdict.parts = [
        "Broadcast to ",
        _figure(cells.iloc[0], "recipients_median", ""),
        " receivers, p99 of the last receiver per message: ",
    ]
    verdict.parts += _values(cells, "fanout_last_p99_median", "us")
    verdict.parts += ["; deliveries per second "]
    verdict.parts += [*_values(cells, "throughput_median", ""), "."]
    clauses, sides = _pair_clauses(cells, "fanout_last_p99", False, "last-receiver p99")
    verdict.parts += clauses
    _finish(
        verdict,
        sides,
        "you broadcast to many receivers and latency matters",
        "you broadcast to many receivers and latency matters",
    )
    return verdict


def _scale_out(summary: pd.DataFrame) -> Verdict:
    """Several processes behind a broker: what crossing it costs a broadcast, what a second
    process costs an echo, and how broadcasts come back after a broker fault."""
    verdict = Verdict(
        "scaleout", "What does running several processes cost?", chart="chart-scaleout"
    )
    fanout = _one_per_server(_where(summary, scenario="scaleout", mode="fanout"))
    column = "fanout_remote_p50_us_median"
    fault = _one_per_server(_where(summary, scenario="broker-fault"))
    measured_fault = not fault.empty and "broker_recovery_s_median" in fault.columns
    if (fanout.empty or column not in fanout.columns) and not measured_fault:
        return _unmeasured(verdict)
    if not fanout.empty and column in fanout.columns:
        verdict.parts = [
            "Each server as ",
            _figure(fanout.iloc[0], "server_workers", ""),
            " processes on one port with Redis between them, broadcasting to ",
            _figure(fanout.iloc[0], "recipients_median", ""),
            " receivers: median latency on the publisher's process ",
            *_values(fanout, "fanout_local_p50_us_median", "us"),
            "; across the broker ",
            *_values(fanout, column, "us"),
            ".",
        ]
    echo = _where(summary, scenario="scaleout", mode="closed")
    if not echo.empty:
        one = _one_per_server(_where(echo, server_workers=1))
        two = _one_per_server(echo[echo["server_workers"] > 1])
        if not one.empty and not two.empty:
            verdict.parts += [" Echo, one process: ", *_values(one, "throughput_median", "")]
            verdict.parts += ["; two: ", *_values(two, "throughput_median", ""), " msgs/s."]
    if measured_fault:
        verdict.parts += [" After the broker was killed and restarted, broadcasts were whole "
                          "again after ", *_values(fault, "broker_recovery_s_median", "s"),
                          "; broadcasts lost ", *_values(fault, "lost_broadcasts_median", ""),
                          "."]  # fmt: skip
        never = fault[fault["broker_recovery_s_median"].isna()]
        if not never.empty:
            verdict.parts.append(
                " Not whole again within the run (the rows' broker_fault_note says why, "
                "naming any process the fault ended): " + ", ".join(never["server"]) + "."
            )
    verdict.parts.append(
        " Every process shares this machine's one server core here, so these are the costs "
        "of the broker and of a second process, not what more cores would add; no ranking "
        "is claimed."
    )
    verdict.favours = "neither"
    return verdict


def _reconnect(summary: pd.DataFrame) -> Verdict:
    verdict = Verdict("reconnect", "How fast do clients come back after a server restart?")
    cells = _one_per_server(_where(summary, mode="reconnect"))
    if cells.empty or "recovery_all_s_median" not in cells.columns:
        return _unmeasured(verdict)
    verdict.parts = [
        "After SIGKILL and restart, ",
        _figure(cells.iloc[0], "connections", ""),
        " clients reconnecting with the same backoff; all back after ",
    ]
    verdict.parts += _values(cells, "recovery_all_s_median", "s")
    verdict.parts += ["; half after ", *_values(cells, "recovery_p50_s_median", "s")]
    verdict.parts += ["; messages lost meanwhile ", *_values(cells, "lost_median", ""), "."]
    verdict.parts.append(
        " Both stacks' clients reconnect by themselves here; the times follow "
        "the shared backoff, so no ranking is claimed."
    )
    verdict.favours = "neither"
    return verdict


def _slow_consumers(summary: pd.DataFrame) -> Verdict:
    verdict = Verdict(
        "slow-consumer", "What do slow consumers do to everyone else?", chart="chart-fanout"
    )
    cells = _one_per_server(_where(summary, scenario="slow-consumer"))
    if cells.empty or "slow_dropped_median" not in cells.columns:
        return _unmeasured(verdict)
    verdict.parts = [
        "With ",
        _figure(cells.iloc[0], "slow_receivers_median", ""),
        " receivers reading slowly, the fast receivers' p99: ",
    ]
    verdict.parts += _values(cells, "fanout_p99_us_median", "us")
    verdict.parts += ["; slow receivers dropped by the server "]
    verdict.parts += _values(cells, "slow_dropped_median", "")
    verdict.parts += ["; server memory growth "]
    verdict.parts += [*_values(cells, "server_rss_growth_bytes_median", "B"), "."]
    clauses, sides = _pair_clauses(cells, "p99", False, "fast-receiver p99")
    verdict.parts += clauses
    _finish(
        verdict,
        sides,
        "some receivers are slow and the others must not suffer",
        "some receivers are slow and the others must not suffer",
    )
    return verdict


def _polling(summary: pd.DataFrame) -> Verdict:
    verdict = Verdict("polling", "What does the long-polling fallback cost?", chart="chart-wire")
    polling = _one_per_server(_where(summary, transport="polling", mode="closed"))
    if polling.empty:
        return _unmeasured(verdict)
    verdict.parts = ["Socket.IO over HTTP long-polling only (", *_setting(polling), "): "]
    verdict.parts += _values(polling, "throughput_median", "msgs/s")
    verdict.parts += [", with HTTP requests per message "]
    verdict.parts += _values(polling, "http_requests_per_msg_median", "")
    verdict.parts += [" and bytes up per message "]
    verdict.parts += [*_values(polling, "wire_bytes_up_per_msg_median", "B"), "."]
    first = polling.iloc[0]
    websocket = _one_per_server(
        _where(
            summary,
            scenario="echo",
            mode="closed",
            transport="websocket",
            loop=first["loop"],
            payload_bytes=first["payload_bytes"],
            payload_kind=first["payload_kind"],
        ).pipe(lambda r: r[r["server"].isin(set(polling["server"]))])
    )
    if not websocket.empty:
        verdict.parts += [" Over WebSocket (", *_setting(websocket), "): "]
        verdict.parts += _values(websocket, "throughput_median", "msgs/s")
        verdict.parts += [" and bytes up per message "]
        verdict.parts += [*_values(websocket, "wire_bytes_up_per_msg_median", "B"), "."]
    verdict.favours = "neither"
    return verdict


def _wire(summary: pd.DataFrame) -> Verdict:
    verdict = Verdict(
        "wire", "How many bytes does each message cost on the wire?", chart="chart-wire"
    )
    cells = _one_per_server(_where(summary, scenario="echo", mode="closed", transport="websocket"))
    if cells.empty or "wire_bytes_up_per_msg_median" not in cells.columns:
        return _unmeasured(verdict)
    verdict.parts = ["Counted at the frame level (", *_setting(cells), "), bytes up per message: "]
    verdict.parts += _values(cells, "wire_bytes_up_per_msg_median", "B")
    verdict.parts += ["; down: ", *_values(cells, "wire_bytes_down_per_msg_median", "B"), "."]
    # Counted bytes do not vary between repeats: the medians compare directly.
    by_server = {str(row["server"]): row for _, row in cells.iterrows()}
    sides: list[Side | None] = []
    for name, row in by_server.items():
        raw = SERVERS[name].raw_counterpart if name in SERVERS else None
        if raw in by_server:
            ours = float(row["wire_bytes_up_per_msg_median"])
            theirs = float(by_server[raw]["wire_bytes_up_per_msg_median"])
            sides.append("raw" if ours > theirs else "socketio" if ours < theirs else "neither")
    verdict.parts.append(" These are counts, not estimates: they do not vary between repeats.")
    _finish(
        verdict,
        sides,
        "bandwidth per message matters (mobile, metered links)",
        "bandwidth per message matters (mobile, metered links)",
    )
    return verdict


QUESTIONS: list[Callable[[pd.DataFrame], Verdict]] = [
    _throughput,
    _protocol_cost,
    _latency,
    _capacity,
    _memory,
    _connect,
    _fanout,
    _scale_out,
    _reconnect,
    _slow_consumers,
    _polling,
    _wire,
]


def verdicts(summary: pd.DataFrame) -> list[Verdict]:
    """One verdict per question, in a fixed order; capacity only when the run searched it.
    Every question but "As shipped" compares the equalised tier's cells without TLS."""
    from bench.report import shipped  # it builds on this module's helpers

    everything, summary = summary, shipped.contract(summary)
    found = [question(summary) for question in QUESTIONS]
    kept = [v for v in found if not (v.key == "capacity" and v.favours == "unmeasured")]
    # Modes with a question of their own (bench.modes), when their cells ran.
    for mode in modes.all_modes():
        if mode.verdict is not None:
            own: Verdict = mode.verdict(summary)
            if own.favours != "unmeasured":
                kept.append(own)
    as_shipped = shipped.verdict(everything)
    if as_shipped.favours != "unmeasured":
        kept.append(as_shipped)
    return kept
