"""The headline figures as a Markdown table, for the README (pure).

Each row quotes the cells one verdict quotes (bench.report.verdict), so the table, the report and
summary.csv cannot disagree: ``wsbench report DIR --markdown`` prints it, and a test checks that
the README's copy is what results/reference/ gives.
"""

from __future__ import annotations

import pandas as pd

from bench.catalog import SERVERS
from bench.report.verdict import Figure, format_value, verdicts

# (row label, verdict key, summary column quoted by that verdict)
HEADLINES = [
    ("Echo throughput, closed loop", "throughput", "throughput_median"),
    ("p99 latency, open loop", "latency", "p99_median"),
    ("Memory per idle connection", "memory", "mem_kib_per_conn_median"),
    ("Connection set-up at full speed (WebSocket)", "connect", "connects_median"),
    ("Broadcast, last receiver's p99", "fanout", "fanout_last_p99_median"),
    ("Reconnect storm, all clients back after", "reconnect", "recovery_all_s_median"),
    ("Fast receivers' p99 beside slow consumers", "slow-consumer", "fanout_p99_us_median"),
    ("Long-polling only, throughput", "polling", "throughput_median"),
    ("Bytes up per message on the wire", "wire", "wire_bytes_up_per_msg_median"),
]


def _first_per_server(figures: list[Figure], summary: pd.DataFrame) -> dict[str, Figure]:
    found: dict[str, Figure] = {}
    for figure in figures:
        server = str(summary.loc[figure.row, "server"])
        found.setdefault(server, figure)  # the verdict's own cell comes first
    return found


def reference_table(summary: pd.DataFrame) -> str:
    by_key = {v.key: v for v in verdicts(summary)}
    present = set(summary["server"].astype(str)) if "server" in summary.columns else set()
    servers = [name for name in SERVERS if name in present]  # the registry's order
    lines = [
        "| | " + " | ".join(servers) + " |",
        "|---|" + "---:|" * len(servers),
    ]
    for label, key, column in HEADLINES:
        verdict = by_key.get(key)
        if verdict is None:
            continue
        quoted = [f for f in verdict.figures if f.column == column]
        if not quoted:
            continue
        per_server = _first_per_server(quoted, summary)
        cells = [format_value(per_server[s].value, per_server[s].unit) if s in per_server else "—"
                 for s in servers]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
