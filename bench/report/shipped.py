"""The report's "As shipped" part: each server with its libraries' defaults and a browser-like
client, beside the same cells under the fairness contract (the default suite's ``shipped``
scenario and both tiers' memory cells), and which of the contract's conclusions hold.

Pure: summary.csv in, a verdict and a table's rows out. Every number is a cell of the summary,
so the page and the CSV never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bench.catalog import SERVERS
from bench.report.verdict import Part, Verdict, _figure, _where
from bench.spec import EQUALISED, SHIPPED

QUESTION = "What changes when each library runs as it ships?"


def contract(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the equalised tier without TLS: what every other question of the report
    compares (results written before the tiers have neither column and are all that)."""
    mask = pd.Series(True, index=frame.index)
    if "tier" in frame.columns:
        mask &= frame["tier"].fillna(EQUALISED) == EQUALISED
    if "tls" in frame.columns:
        mask &= ~frame["tls"].fillna(False).astype(bool)
    return frame[mask]


def _one(rows: pd.DataFrame, server: str) -> pd.Series | None:
    mine = rows[rows["server"] == server]
    return None if mine.empty else mine.iloc[0]


@dataclass(frozen=True)
class ServerTiers:
    """One server's cells in both tiers (None where not measured)."""

    server: str
    echo_equalised: pd.Series | None
    echo_shipped: pd.Series | None
    memory_equalised: pd.Series | None
    memory_shipped: pd.Series | None


def server_tiers(summary: pd.DataFrame) -> list[ServerTiers]:
    """Per server in the catalog's order: the shipped scenario's closed-loop cells in each tier
    and the idle-memory cells of each tier (the memory scenario's for the contract)."""
    if summary.empty or "tier" not in summary.columns:
        return []
    echo = _where(summary, scenario="shipped", mode="closed")
    memory = summary[summary["mode"] == "memory"] if "mode" in summary.columns else summary
    memory = memory[~memory["tls"].fillna(False).astype(bool)] if "tls" in memory else memory
    found = []
    for server in [*SERVERS, *sorted(set(echo["server"]) - set(SERVERS))]:
        cells = ServerTiers(
            server,
            _one(echo[echo["tier"] == EQUALISED], server),
            _one(echo[echo["tier"] == SHIPPED], server),
            _one(memory[memory["tier"] == EQUALISED], server),
            _one(memory[memory["tier"] == SHIPPED], server),
        )
        if cells.echo_shipped is not None or cells.memory_shipped is not None:
            found.append(cells)
    return found


def _value(row: pd.Series | None, column: str) -> float:
    if row is None or column not in row.index:
        return math.nan
    return float(row[column])


def _wire(row: pd.Series | None) -> float:
    return _value(row, "wire_bytes_up_per_msg_median") + _value(
        row, "wire_bytes_down_per_msg_median"
    )


def table(summary: pd.DataFrame) -> list[dict[str, str]]:
    """The section's table: per server, equalised beside shipped."""

    def shown(value: float, digits: int = 0) -> str:
        return "" if math.isnan(value) else f"{value:,.{digits}f}"

    rows = []
    for cells in server_tiers(summary):
        rows.append({
            "server": cells.server,
            "memory_equalised": shown(_value(cells.memory_equalised, "mem_kib_per_conn_median"), 1),
            "memory_shipped": shown(_value(cells.memory_shipped, "mem_kib_per_conn_median"), 1),
            "throughput_equalised": shown(_value(cells.echo_equalised, "throughput_median")),
            "throughput_shipped": shown(_value(cells.echo_shipped, "throughput_median")),
            "wire_equalised": shown(_wire(cells.echo_equalised), 1),
            "wire_shipped": shown(_wire(cells.echo_shipped), 1),
            "setup_equalised": shown(_value(cells.echo_equalised, "connect_p50_us_median")),
            "setup_shipped": shown(_value(cells.echo_shipped, "connect_p50_us_median")),
        })  # fmt: skip
    return rows


def _ratio_text(row: pd.Series | None, raw: str) -> tuple[float, Part | None]:
    column = f"throughput_ratio_vs_{raw}_median"
    value = _value(row, column)
    if row is None or math.isnan(value):
        return math.nan, None
    return value, _figure(row, column, "ratio")


def verdict(summary: pd.DataFrame) -> Verdict:
    found = Verdict("shipped", QUESTION)
    servers = server_tiers(summary)
    if not servers:
        return found  # unmeasured: left out of the report
    parts: list[Part] = [
        "With each library's defaults and a browser's permessage-deflate offer (chat-like "
        "JSON of 512 B in closed loop): "
    ]
    first = True
    for cells in servers:
        shipped, equalised = cells.echo_shipped, cells.echo_equalised
        if shipped is None or equalised is None:
            continue
        parts += ["; " if not first else "", f"{cells.server} sends "]
        first = False
        parts += [_figure(equalised, "wire_bytes_up_per_msg_median", "B"), " up per message "
                  "under the contract and ", _figure(shipped, "wire_bytes_up_per_msg_median", "B"),
                  " as shipped, at ", _figure(shipped, "throughput_median", "msgs/s"),
                  " against ", _figure(equalised, "throughput_median", "msgs/s")]  # fmt: skip
    parts.append(".")
    memory = [
        (c.server, c.memory_equalised, c.memory_shipped)
        for c in servers
        if c.memory_shipped is not None and c.memory_equalised is not None
    ]
    if memory:
        parts.append(" Memory per idle connection: ")
        for index, (server, before, after) in enumerate(memory):
            parts += [", " if index else "", f"{server} "]
            parts += [_figure(before, "mem_kib_per_conn_median", "KiB"), " to ",
                      _figure(after, "mem_kib_per_conn_median", "KiB")]  # fmt: skip
        parts.append(".")
    # Which of the contract's conclusions hold: the Socket.IO/raw throughput ratio, per pair.
    held: list[list[Part]] = []
    changed: list[list[Part]] = []
    for cells in servers:
        info = SERVERS.get(cells.server)
        raw = info.raw_counterpart if info is not None else None
        if raw is None:
            continue
        ratio_before, before_part = _ratio_text(cells.echo_equalised, raw)
        ratio_after, after_part = _ratio_text(cells.echo_shipped, raw)
        if before_part is None or after_part is None:
            continue
        sentence: list[Part] = [f" {cells.server}/{raw} throughput: ", before_part,
                                " under the contract, ", after_part, " as shipped"]  # fmt: skip
        (held if (ratio_before < 1) == (ratio_after < 1) else changed).append(sentence)
    if held:
        parts.append(" Socket.IO's place against its raw counterpart holds:")
        for sentence in held:
            parts += [*sentence, ";"]
        parts[-1] = "."
    if changed:
        parts.append(" It changes with the defaults:")
        for sentence in changed:
            parts += [*sentence, ";"]
        parts[-1] = "."
    parts.append(
        " The json payload repeats its fields in every message, so with context takeover the "
        "compressor finds most of a message in the previous one: the savings are an upper bound "
        "for real chat traffic."
    )
    found.parts = parts
    found.favours = "neither"  # what the defaults cost, not a side to take
    return found
