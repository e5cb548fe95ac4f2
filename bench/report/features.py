"""The feature matrix and the "use ... when" lists (pure).

What each stack offers is a fact about the libraries; whether this run exercised it is read
from runs.csv: every entry names the scenarios of this run that used the feature on a Socket.IO
server, or says "not measured in this run". The lists come from the verdicts' sides and from
the features the run exercised, never from text written for a particular result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from bench.report.verdict import Verdict

NOT_MEASURED = "not measured in this run"


@dataclass(frozen=True)
class Feature:
    name: str
    plain: str  # what plain WebSockets (websockets, aiohttp) give
    socketio: str  # what python-socketio gives
    # Which Socket.IO rows of runs.csv exercise it.
    exercised_by: Callable[[pd.DataFrame], pd.Series] | None
    builtin_only_in_socketio: bool = True


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    if name in runs.columns:
        return runs[name]
    return pd.Series([None] * len(runs), index=runs.index)


FEATURES = [
    Feature(
        "Rooms and broadcast",
        "by hand: keep a set of connections and loop (websockets has broadcast())",
        "rooms, emit(to=room)",
        lambda r: _column(r, "scenario").isin(["fanout", "slow-consumer"]),
    ),
    Feature(
        "Acknowledgements",
        "by hand: an id in each message, matched in the client",
        "emit with a callback, call()",
        lambda r: _column(r, "ack").astype(str) == "True",
    ),
    Feature(
        "Automatic reconnection",
        "websockets' client: async for over connect(); aiohttp: by hand",
        "built into the client, with backoff",
        lambda r: _column(r, "mode") == "reconnect",
        builtin_only_in_socketio=False,
    ),
    Feature(
        "HTTP long-polling fallback",
        "none",
        "Engine.IO polling, upgraded to WebSocket",
        lambda r: _column(r, "transport").isin(["polling", "polling-upgrade"]),
    ),
    Feature(
        "Namespaces",
        "by hand: one path or a field per channel",
        "namespaces multiplexed on one connection",
        # Every Socket.IO connection joins the default namespace '/'.
        lambda r: _column(r, "protocol") == "socketio",
    ),
    Feature(
        "Binary attachments",
        "binary frames",
        "placeholder packet plus attachment frames",
        lambda r: _column(r, "payload_kind") == "binary",
        builtin_only_in_socketio=False,
    ),
    Feature(
        "Horizontal scaling through a message queue",
        "by hand (a pub/sub of your choice)",
        "client managers for Redis, Kafka, RabbitMQ...",
        # Several server processes behind a Redis broker (--server-workers, scaleout).
        lambda r: pd.to_numeric(_column(r, "server_workers"), errors="coerce").fillna(1) > 1,
    ),
]


@dataclass(frozen=True)
class FeatureRow:
    name: str
    plain: str
    socketio: str
    measured_by: str  # the scenarios of this run that exercised it, or NOT_MEASURED
    exercised: bool
    builtin_only_in_socketio: bool


def feature_matrix(runs: pd.DataFrame) -> list[FeatureRow]:
    ok = runs[(_column(runs, "status") == "ok") & (_column(runs, "protocol") == "socketio")]
    rows = []
    for feature in FEATURES:
        scenarios: list[str] = []
        if feature.exercised_by is not None and not ok.empty:
            used = ok[feature.exercised_by(ok).fillna(False).astype(bool)]
            scenarios = sorted(set(used["scenario"].astype(str)))
        measured = ", ".join(scenarios) if scenarios else NOT_MEASURED
        rows.append(
            FeatureRow(
                feature.name,
                feature.plain,
                feature.socketio,
                measured,
                bool(scenarios),
                feature.builtin_only_in_socketio,
            )
        )
    return rows


@dataclass(frozen=True)
class UseWhen:
    text: str
    link: str  # anchor of the verdict or feature row it comes from


def use_when(verdicts: list[Verdict], features: list[FeatureRow]) -> dict[str, list[UseWhen]]:
    """``{"raw": [...], "socketio": [...]}``: the questions each stack won in this run, then
    (for Socket.IO) the built-in features this run exercised."""
    lists: dict[str, list[UseWhen]] = {"raw": [], "socketio": []}
    for verdict in verdicts:
        if verdict.favours in lists and verdict.reason:
            lists[verdict.favours].append(UseWhen(verdict.reason, f"verdict-{verdict.key}"))
    for index, feature in enumerate(features):
        if feature.exercised and feature.builtin_only_in_socketio:
            lists["socketio"].append(
                UseWhen(
                    f"you want {feature.name.lower()} built in (exercised here by "
                    f"{feature.measured_by})",
                    f"feature-{index}",
                )
            )
    return lists
