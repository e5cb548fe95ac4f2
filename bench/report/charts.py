"""The report's charts: matplotlib figures rendered to inline SVG (no script, no fetch).

One colour and one position per server on every chart (the catalog's order); every axis names
its unit. Output is deterministic (fixed SVG ids, no creation date) so that ``wsbench report``
rebuilds a byte-identical page. Charts whose scenario is not in the run are left out.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display, here or in CI

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from bench import modes
from bench.catalog import SERVERS
from bench.metrics.histogram import merge
from bench.report.verdict import preferred_loop

SPECTRUM_PERCENTILES = [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9]
FIGURE_SIZE_IN = (7.0, 3.6)

matplotlib.rcParams.update(
    {
        "svg.hashsalt": "wsbench",  # stable element ids: identical bytes on every rebuild
        "svg.fonttype": "none",  # text stays text: smaller files, selectable labels
        "font.size": 9,
        "axes.grid": True,
        "grid.alpha": 0.3,
    }
)


@dataclass(frozen=True)
class Chart:
    id: str  # anchor on the page: chart-<name>
    title: str
    caption: str
    svg: str


# Servers outside the catalog (a --target run's label) get one of these, by name.
OTHER_COLOURS = ["#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31"]


def colour(server: str) -> str:
    """The same colour for a server on every chart: its record's."""
    if server in SERVERS:
        return SERVERS[server].colour
    return OTHER_COLOURS[zlib.crc32(server.encode()) % len(OTHER_COLOURS)]


def _servers(frame: pd.DataFrame) -> list[str]:
    """The servers present, the catalog's first in its order, then any others by name."""
    present = set(frame["server"].astype(str)) if "server" in frame.columns else set()
    return [n for n in SERVERS if n in present] + sorted(present - set(SERVERS))


def _preferred_loop(frame: pd.DataFrame) -> pd.DataFrame:
    """Each server's rows on its preferred loop (uvloop, or its own: Node's libuv)."""
    if frame.empty:
        return frame
    servers = frame["server"].astype(str)
    keep = pd.Series(False, index=frame.index)
    for server in set(servers):
        loop = preferred_loop(server, sorted(set(frame.loc[servers == server, "loop"]), key=str))
        keep |= (servers == server) & (frame["loop"] == loop)
    return frame[keep]


def _where(frame: pd.DataFrame, **equals: object) -> pd.DataFrame:
    for name, value in equals.items():
        if name not in frame.columns:
            return frame.iloc[0:0]
        frame = frame[frame[name] == value]
    return frame


def _not_ack(frame: pd.DataFrame) -> pd.DataFrame:
    if "ack" not in frame.columns:
        return frame
    return frame[frame["ack"].astype(str) != "True"]


def _plotted(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The rows that have every plotted figure (log scales refuse NaN and zero)."""
    if any(column not in frame.columns for column in columns):
        return frame.iloc[0:0]
    keep = frame[list(columns)].notna().all(axis=1) & (frame[list(columns)] > 0).all(axis=1)
    return frame[keep]


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline: drop the XML prolog and doctype


def _new(title: str) -> tuple[Figure, Axes]:
    figure, axes = plt.subplots(figsize=FIGURE_SIZE_IN)
    axes.set_title(title, fontsize=10)
    return figure, axes


def _log_axis(axes: Axes, axis: str = "y", divide_by: float = 1.0) -> None:
    """A log scale labelled in plain numbers at 1, 2 and 5 of each decade (matplotlib's
    default writes 10^x on major ticks only, which leaves a one-decade axis unlabelled)."""
    (axes.set_yscale if axis == "y" else axes.set_xscale)("log")
    target = axes.yaxis if axis == "y" else axes.xaxis
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_minor_locator(NullLocator())
    target.set_major_formatter(FuncFormatter(lambda value, _: _plain(value / divide_by)))


def _plain(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:g}"


def _legend(axes: Axes, **options: object) -> None:
    """A legend when something was drawn with a label (matplotlib warns on stderr otherwise)."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(**options)


def _thousands(axes: Axes, axis: str = "y") -> None:
    formatter = FuncFormatter(lambda value, _: f"{value:,.0f}")
    (axes.yaxis if axis == "y" else axes.xaxis).set_major_formatter(formatter)


def _error_bars(rows: pd.DataFrame, prefix: str) -> list[list[float]] | None:
    low, high = f"{prefix}_ci_low", f"{prefix}_ci_high"
    if low not in rows.columns:
        return None
    median = rows[f"{prefix}_median"]
    below = (median - rows[low]).clip(lower=0).fillna(0).tolist()
    above = (rows[high] - median).clip(lower=0).fillna(0).tolist()
    return [below, above]


# --- The charts -------------------------------------------------------------------------------


def spectrum(runs: pd.DataFrame, histograms: dict[str, list[str]]) -> Chart | None:
    cells = _preferred_loop(
        _not_ack(_where(runs, scenario="echo", mode="closed", transport="websocket", status="ok"))
    )
    if cells.empty:
        return None
    cells = cells[cells["payload_bytes"] == cells["payload_bytes"].min()]
    cells = cells[cells["connections"] == cells["connections"].min()]
    figure, axes = _new("Latency percentile spectrum, closed-loop echo (all repeats merged)")
    positions = [1 / (1 - p / 100) for p in SPECTRUM_PERCENTILES]
    drawn = False
    for server in _servers(cells):
        blobs = [
            b
            for run_id in cells[cells["server"] == server]["run_id"]
            for b in histograms.get(run_id, [])
        ]
        histogram = merge(blobs)
        if histogram.get_total_count() == 0:
            continue
        values = histogram.get_percentile_to_value_dict(SPECTRUM_PERCENTILES)
        latencies_ms = [values[p] / 1000 for p in SPECTRUM_PERCENTILES]
        axes.plot(positions, latencies_ms, marker="o", label=server, color=colour(server))
        drawn = True
    if not drawn:
        plt.close(figure)
        return None
    axes.set_xscale("log")
    _log_axis(axes)
    axes.set_xticks(positions, [f"p{p:g}" for p in SPECTRUM_PERCENTILES])
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency (ms, log scale)")
    _legend(axes)
    first = cells.iloc[0]
    caption = (
        f"{int(first['payload_bytes'])}-byte {first['payload_kind']} messages, "
        f"{int(first['connections'])} connections, {first['loop']}; latency from send "
        "to verified echo."
    )
    return Chart("chart-spectrum", "Latency spectrum", caption, _svg(figure))


def _lines_by_server(
    axes: Axes,
    rows: pd.DataFrame,
    x: str,
    prefix: str,
    styles: dict[str, str] | None = None,
    split: str | None = None,
) -> bool:
    drawn = False
    for server in _servers(rows):
        mine = rows[rows["server"] == server]
        groups: Iterable[tuple[object, pd.DataFrame]] = (
            mine.groupby(split, sort=True) if split else [(None, mine)]
        )
        for key, group in groups:
            group = group.sort_values(x)
            label = server if key is None else f"{server} ({key})"
            style = (styles or {}).get(str(key), "-")
            axes.errorbar(
                group[x],
                group[f"{prefix}_median"],
                yerr=_error_bars(group, prefix),
                marker="o",
                linestyle=style,
                capsize=3,
                label=label,
                color=colour(server),
            )
            drawn = True
    return drawn


def _categorical_lines(axes: Axes, rows: pd.DataFrame, x: str, prefix: str) -> list[float]:
    """One line per server over evenly spaced categories of ``x`` (so one value or a few far
    apart both read well), servers nudged apart so their interval bars do not hide each other."""
    categories = sorted(set(rows[x].astype(float)))
    servers = _servers(rows)
    for index, server in enumerate(servers):
        mine = rows[rows["server"] == server].sort_values(x)
        nudge = (index - (len(servers) - 1) / 2) * 0.06
        positions = [categories.index(float(v)) + nudge for v in mine[x]]
        axes.errorbar(
            positions,
            mine[f"{prefix}_median"],
            yerr=_error_bars(mine, prefix),
            marker="o",
            capsize=3,
            label=server,
            color=colour(server),
        )
    axes.set_xticks(range(len(categories)), [f"{c:,.0f}" for c in categories])
    axes.set_xlim(-0.5, len(categories) - 0.5)
    return categories


def payload_throughput(summary: pd.DataFrame) -> Chart | None:
    summary = _plotted(summary, "throughput_median")
    rows = _preferred_loop(
        _not_ack(_where(summary, scenario="payload", mode="closed", transport="websocket"))
    )
    if rows.empty:
        return None
    figure, axes = _new("Throughput by payload size (closed loop)")
    _lines_by_server(
        axes,
        rows,
        "payload_bytes",
        "throughput",
        styles={"text": "-", "binary": "--", "json": ":"},
        split="payload_kind",
    )
    axes.set_xscale("log", base=2)
    _log_axis(axes)
    axes.set_xlabel("payload (bytes, log scale)")
    axes.set_ylabel("messages/s (log scale)")
    _thousands(axes, "x")
    _legend(axes, fontsize=7, ncol=2)
    return Chart(
        "chart-payload",
        "Throughput by payload size",
        f"Medians over repeats with 95% intervals; {rows.iloc[0]['loop']}; solid text, "
        "dashed binary.",
        _svg(figure),
    )


def connection_throughput(summary: pd.DataFrame) -> Chart | None:
    summary = _plotted(summary, "throughput_median")
    rows = _preferred_loop(
        _not_ack(_where(summary, mode="closed", transport="websocket", payload_kind="text"))
    )
    if rows.empty:
        return None
    rows = rows[rows["payload_bytes"] == rows["payload_bytes"].min()]
    rows = rows.drop_duplicates(["server", "connections"])
    figure, axes = _new("Throughput by connection count (closed loop)")
    _categorical_lines(axes, rows, "connections", "throughput")
    axes.set_xlabel("connections")
    axes.set_ylabel("messages/s (log scale)")
    _log_axis(axes)
    _legend(axes, fontsize=7)
    counts = sorted(set(rows["connections"].astype(int)))
    caption = (
        f"{int(rows.iloc[0]['payload_bytes'])}-byte text, {rows.iloc[0]['loop']}; "
        f"connection counts in this run: {', '.join(map(str, counts))}."
    )
    return Chart("chart-connections", "Throughput by connection count", caption, _svg(figure))


def rate_latency(summary: pd.DataFrame) -> Chart | None:
    summary = _plotted(summary, "p99_median")
    open_rows = _preferred_loop(_where(summary, mode="open", transport="websocket"))
    capacity = _where(summary, mode="capacity")
    if open_rows.empty and capacity.empty:
        return None
    figure, axes = _new("p99 latency against offered rate (open loop)")
    if not open_rows.empty:
        _lines_by_server(axes, open_rows, "target_rate", "p99")
    for server in _servers(capacity):
        mine = capacity[capacity["server"] == server]
        axes.scatter(
            mine["target_rate"],
            mine["p99_median"],
            marker="*",
            s=120,
            color=colour(server),
            label=f"{server} capacity",
            edgecolors="black",
            zorder=3,
        )
    _log_axis(axes, divide_by=1000)
    rates = sorted(set(open_rows["target_rate"]) | set(capacity.get("target_rate", [])))
    if len(rates) == 1:  # one offered rate: give the point room instead of a hairline axis
        axes.set_xlim(rates[0] * 0.5, rates[0] * 1.5)
    axes.set_xlabel("offered rate (messages/s)")
    axes.set_ylabel("p99 latency (ms, log scale)")
    _thousands(axes, "x")
    _legend(axes, fontsize=7)
    return Chart(
        "chart-rate",
        "p99 against offered rate",
        "Latency from each message's intended send time (no coordinated omission); "
        "medians with 95% intervals; stars: capacity under the p99 target.",
        _svg(figure),
    )


def memory(runs: pd.DataFrame) -> Chart | None:
    rows = _where(runs, mode="memory", status="ok")
    if rows.empty or "mem_points" not in rows.columns:
        return None
    figure, axes = _new("Server memory (RSS) against idle connections")
    for server in _servers(rows):
        for _, row in rows[rows["server"] == server].iterrows():
            points = json.loads(row["mem_points"])
            xs = [p[0] for p in points]
            axes.scatter(xs, [p[1] / 2**20 for p in points], color=colour(server))
            slope_mib = float(row["mem_kib_per_conn"]) / 1024
            intercept_mib = float(row["mem_intercept_mib"])
            ends = [0, max(xs)]
            axes.plot(
                ends,
                [intercept_mib + slope_mib * x for x in ends],
                color=colour(server),
                label=f"{server}: {row['mem_kib_per_conn']:.1f} KiB/connection",
            )
    axes.set_xlabel("open idle connections")
    axes.set_ylabel("RSS (MiB)")
    _thousands(axes, "x")
    _legend(axes, fontsize=7)
    return Chart(
        "chart-memory",
        "Memory per connection",
        "Points: RSS sampled after the server settled at each step; lines: the "
        "least-squares fit whose slope is mem_kib_per_conn.",
        _svg(figure),
    )


def fanout(summary: pd.DataFrame) -> Chart | None:
    summary = _plotted(summary, "fanout_last_p99_median", "recipients_median", "p50_median")
    rows = _preferred_loop(_where(summary, scenario="fanout"))
    if rows.empty or "recipients_median" not in rows.columns:
        return None
    figure, axes = _new("Broadcast latency by number of receivers")
    _lines_by_server(axes, rows, "recipients_median", "fanout_last_p99")
    for server in _servers(rows):
        mine = rows[rows["server"] == server].sort_values("recipients_median")
        axes.plot(
            mine["recipients_median"],
            mine["p50_median"],
            linestyle=":",
            marker=".",
            color=colour(server),
        )
    axes.set_xscale("log")
    _log_axis(axes, divide_by=1000)
    axes.set_xlabel("receivers (log scale)")
    axes.set_ylabel("publish to receipt (ms, log scale)")
    _thousands(axes, "x")
    _legend(axes, fontsize=7)
    return Chart(
        "chart-fanout",
        "Fan-out latency",
        "Solid: p99 of the last receiver of each message, with 95% intervals; dotted: "
        "p50 over every delivery.",
        _svg(figure),
    )


def scaleout(summary: pd.DataFrame) -> Chart | None:
    """Scale-out fan-out: median delivery latency to receivers on the publisher's process and
    across the broker, per server."""
    local, remote = "fanout_local_p50_us_median", "fanout_remote_p50_us_median"
    summary = _plotted(summary, local, remote)
    rows = _preferred_loop(_where(summary, scenario="scaleout", mode="fanout"))
    if rows.empty or local not in rows.columns:
        return None
    rows, labels = _bar_order(rows)
    figure, axes = _new("Broadcast across server processes")
    colours = [colour(str(s)) for s in rows["server"]]
    series = {
        "same process as the publisher": [v / 1000 for v in rows[local]],
        "across the broker": [v / 1000 for v in rows[remote]],
    }
    _bars(axes, labels, series, colours)
    axes.set_yscale("log")
    axes.set_ylabel("publish to receipt, p50 (ms, log scale)")
    _legend(axes, fontsize=7)
    return Chart(
        "chart-scaleout",
        "Fan-out across server processes",
        "Each server as two processes on one port with Redis between them: median latency of "
        "deliveries to receivers on the publisher's process (solid) and on the other one "
        "(pale), from the intended publish time.",
        _svg(figure),
    )


def _bars(
    axes: Axes, labels: list[str], series: dict[str, list[float]], colours: list[str]
) -> None:
    width = 0.8 / max(1, len(series))
    for index, (name, values) in enumerate(series.items()):
        offsets = [i + (index - (len(series) - 1) / 2) * width for i in range(len(labels))]
        bars = axes.bar(
            offsets,
            values,
            width,
            color=colours,
            alpha=1.0 - 0.45 * index,
            edgecolor="black",
            linewidth=0.5,
            label=name,
        )
        axes.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=7)
    axes.set_xticks(range(len(labels)), labels, fontsize=7)


def _bar_order(rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Bars in the servers' order, WebSocket rows before other transports; their labels."""
    servers = _servers(rows)
    keys = [
        (t != "websocket", servers.index(str(s)))
        for s, t in zip(rows["server"], rows["transport"], strict=True)
    ]
    rows = rows.iloc[sorted(range(len(rows)), key=keys.__getitem__)]
    labels = [
        s if t == "websocket" else f"{s}\n({t})"
        for s, t in zip(rows["server"], rows["transport"], strict=True)
    ]
    return rows, labels


def wire_bytes(summary: pd.DataFrame) -> Chart | None:
    needed = "wire_bytes_up_per_msg_median"
    if needed not in summary.columns:
        return None
    echo = _preferred_loop(
        _not_ack(_where(summary, scenario="echo", mode="closed", transport="websocket"))
    )
    if not echo.empty:
        echo = echo[echo["payload_kind"] == "text"]
        echo = echo[echo["payload_bytes"] == echo["payload_bytes"].min()]
    polling = _where(summary, transport="polling", mode="closed")
    rows = pd.concat([echo, polling]).dropna(subset=[needed])
    if rows.empty:
        return None
    rows = rows.drop_duplicates(["server", "transport"])
    rows, labels = _bar_order(rows)
    figure, axes = _new("Bytes on the wire per message")
    _bars(
        axes,
        labels,
        {
            "up (client to server)": rows[needed].tolist(),
            "down (server to client)": rows["wire_bytes_down_per_msg_median"].tolist(),
        },
        [colour(s) for s in rows["server"]],
    )
    axes.set_ylabel("bytes per message")
    _legend(axes, fontsize=7)
    first = rows.iloc[0]
    return Chart(
        "chart-wire",
        "Wire bytes per message",
        f"{int(first['payload_bytes'])}-byte {first['payload_kind']} payload; counted at "
        "the frame level (HTTP bytes for polling); light bars: server to client.",
        _svg(figure),
    )


def connect(summary: pd.DataFrame) -> Chart | None:
    summary = _plotted(summary, "connects_median")
    rows = _preferred_loop(_where(summary, mode="connect"))
    if rows.empty or "connects_median" not in rows.columns:
        return None
    rows = rows[rows["target_conns_s"].isna() | (rows["target_conns_s"] == 0)]
    if rows.empty:
        return None
    rows, labels = _bar_order(rows.drop_duplicates(["server", "transport"]))
    figure, axes = _new("Connection set-up at full speed")
    _bars(
        axes,
        labels,
        {"connections/s": rows["connects_median"].tolist()},
        [colour(s) for s in rows["server"]],
    )
    errors = _error_bars(rows, "connects")
    if errors is not None:
        axes.errorbar(
            range(len(rows)),
            rows["connects_median"],
            yerr=errors,
            fmt="none",
            ecolor="black",
            capsize=3,
        )
    axes.set_ylabel("connections/s")
    _thousands(axes)
    return Chart(
        "chart-connect",
        "Connection set-up",
        "TCP connect to first usable message, medians with 95% intervals; "
        "polling-upgrade is Socket.IO's default path.",
        _svg(figure),
    )


def all_charts(
    runs: pd.DataFrame, summary: pd.DataFrame, histograms: dict[str, list[str]]
) -> list[Chart]:
    # Cells without one valid run have no figures to draw (a suite whose runs all failed still
    # gets its report, without charts).
    if "repeats" in summary.columns:
        summary = summary[summary["repeats"] > 0]
    makers: list[Callable[[], Chart | None]] = [
        lambda: spectrum(runs, histograms),
        lambda: payload_throughput(summary),
        lambda: connection_throughput(summary),
        lambda: rate_latency(summary),
        lambda: memory(runs),
        lambda: fanout(summary),
        lambda: scaleout(summary),
        lambda: wire_bytes(summary),
        lambda: connect(summary),
    ]
    # Modes with a chart of their own (bench.modes).
    charts = [maker() for maker in makers]
    charts += [m.chart(runs, summary) for m in modes.all_modes() if m.chart is not None]
    return [chart for chart in charts if chart is not None]
