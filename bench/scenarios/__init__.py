"""Scenario suites: TOML files beside this module, validated and expanded into run specs.

A suite is a list of ``[[run]]`` entries; list-valued fields expand into their product. Repeats
interleave whole passes over the matrix (A B A B, not A A B B), so drift on a shared machine hits
every server alike.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any

from bench import modes
from bench.catalog import LOOPS, SELECTORS, SERVERS, select
from bench.errors import UsageError
from bench.modes import check_positive
from bench.protocol.exchange import MIN_JSON_PAYLOAD_BYTES, MIN_PAYLOAD_BYTES, PAYLOAD_KINDS
from bench.spec import (
    EQUALISED,
    POLLING_UPGRADE,
    SHIPPED,
    SHIPPED_MODES,
    TIERS,
    TLS_MODES,
    RunSpec,
)
from servers.common import FAIRNESS

SUITES = ("quick", "default", "full")
# Room left under the servers' message limit for Socket.IO's envelope.
ENVELOPE_ALLOWANCE_BYTES = 64
MAX_PAYLOAD_BYTES = FAIRNESS.max_message_bytes - ENVELOPE_ALLOWANCE_BYTES

# Closed loop: servers of one pass share a run, each loaded in turn for slices of this length
# (bench.load.slices). 0.1 s is short against the machine's drift (seconds) and long against a
# slice's ramp-up and drain (a round trip or two, about a millisecond). Measured on the 2-core
# machine, Socket.IO/raw throughput ratio CV over 5 repeats: 7-23% with each server in its own
# run, 3-6% with 0.5-s slices, 1-6% with 0.2 s, 2-3% with 0.1 s (docs/measurements.md, "Slice
# length").
DEFAULT_SLICE_S = 0.1
MIN_SLICE_S = 0.05

_ENTRY_KEYS: dict[str, type | tuple[type, ...]] = {
    "scenario": str,
    "servers": (str, list),  # names, or a selector of bench.catalog (all, raw, socketio)
    "loops": list,
    "mode": str,
    "connections": (int, list),
    "payload_bytes": (int, list),
    "payload_kind": (str, list),
    "rate_msgs_s": (int, float, list),
    "inflight": int,
    "ack": bool,
    "workers": int,
    "warmup_s": (int, float),
    "duration_s": (int, float),
    "slice_s": (int, float),
    "transport": str,
    "rate_conns_s": (int, float, list),
    "memory_steps": list,
    "repeat": int,
    "slow_share": (int, float),
    "server_workers": (int, list),
    "broker_fault": bool,
    "tier": str,
    "tls": bool,
}
_BOOL_KEYS = ("ack", "broker_fault", "tls")
_SPEC_FIELDS = {f.name for f in fields(RunSpec)}
# Bounds on what a run may ask for: beyond them a run is a mistake, not a measurement, and it
# would hold the machine (or send load) until killed.
MAX_SECONDS = 86_400.0  # a duration or warm-up of more than a day
MAX_REPEAT = 1_000
# Closed loop: messages in flight per connection. The generator waits 5 s (WorkerPlan's
# drain_timeout_s) for the last replies; 10 connections x 1,024 in flight drain in that time
# at 2,048 msgs/s, below the slowest cell here (long-polling, about 3,000 msgs/s). Their bytes
# must also fit the kernel's socket send buffer (see check_inflight).
MAX_INFLIGHT = 1_024
# A frame's bytes beyond its payload: the WebSocket header and Socket.IO's envelope.
FRAME_OVERHEAD_BYTES = 14 + ENVELOPE_ALLOWANCE_BYTES
TRANSPORTS = ("websocket", "polling", POLLING_UPGRADE)
# Scale-out: at most this many processes of one server (a 2-core machine already shares its
# server core among them; more is a mistake, not a measurement), in the modes that run
# against several processes (bench.modes: memory and reconnect measure or restart one).
MAX_SERVER_WORKERS = 8


def check_server_workers(where: str, workers: int, mode: str, transport: str) -> None:
    """Several processes of a server: a count from 1 to MAX_SERVER_WORKERS, in a mode that
    runs against them, and not over long-polling (UsageError, one line)."""
    if (
        isinstance(workers, bool)
        or not isinstance(workers, int)
        or not (1 <= workers <= MAX_SERVER_WORKERS)
    ):
        raise UsageError(f"{where}: a number of processes from 1 to {MAX_SERVER_WORKERS}")
    if workers == 1:
        return
    if not modes.get(mode).scale_out:
        scale_out = [m.name for m in modes.all_modes() if m.scale_out]
        raise UsageError(
            f"{where}: {mode} mode measures one server process; several run in "
            f"{', '.join(scale_out)} modes"
        )
    if transport != "websocket":
        raise UsageError(
            f"{where}: Socket.IO over long-polling needs sticky sessions (every request of a "
            "session at the same process), which port sharing cannot give: use WebSocket"
        )


_REQUIRED = ("scenario", "servers", "mode", "duration_s")
_SUITE_KEYS = {"name", "description", "repeat", "run"}


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    repeat: int
    entries: tuple[dict[str, Any], ...]

    @property
    def scenarios(self) -> list[str]:
        return sorted({entry["scenario"] for entry in self.entries})


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def check_seconds(name: str, value: float, allow_zero: bool = False) -> None:
    check_positive(name, value, allow_zero)
    if value > MAX_SECONDS:
        raise UsageError(f"{name} must be at most {MAX_SECONDS:,.0f} s (a day), got {value:g}")


def check_repeat(name: str, value: int) -> None:
    check_positive(name, value)
    if value > MAX_REPEAT:
        raise UsageError(f"{name} must be at most {MAX_REPEAT:,}, got {value:,}")


def check_inflight(name: str, inflight: int, payload_bytes: int, send_buffer_bytes: int) -> None:
    """In-flight messages beyond what the connection's kernel send buffer holds wait in the
    generator's own buffer, where their latency is the generator's queue, and beyond
    ``MAX_INFLIGHT`` the last replies cannot drain before the run's end."""
    check_positive(name, inflight)
    if inflight > MAX_INFLIGHT:
        raise UsageError(
            f"{name} must be at most {MAX_INFLIGHT:,} per connection, got {inflight:,}"
        )
    in_flight_bytes = inflight * (payload_bytes + FRAME_OVERHEAD_BYTES)
    if in_flight_bytes > send_buffer_bytes:
        raise UsageError(
            f"{name} {inflight:,} x {payload_bytes:,}-byte messages ({in_flight_bytes:,} bytes "
            f"with framing) exceed the kernel's socket send buffer ({send_buffer_bytes:,} bytes, "
            "net.ipv4.tcp_wmem): the excess would queue inside the generator"
        )


def check_tier_and_tls(where: str, tier: str, tls: bool, mode: str, transport: str) -> None:
    """What the shipped tier and TLS measure so far (a suite entry's ``tier`` and ``tls``)."""
    if tier not in TIERS:
        raise UsageError(f"{where}: tier must be one of {', '.join(TIERS)}, got {tier!r}")
    if tier == SHIPPED and mode not in SHIPPED_MODES:
        raise UsageError(
            f"{where}: tier shipped measures {', '.join(SHIPPED_MODES)} cells so far, not {mode}"
        )
    if tls and mode not in TLS_MODES:
        raise UsageError(f"{where}: tls measures {', '.join(TLS_MODES)} cells so far, not {mode}")
    if tls and tier == SHIPPED:
        raise UsageError(
            f"{where}: tls runs in the equalised tier so far (the shipped tier's Socket.IO "
            "opens over long-polling, which the generator cannot do over TLS)"
        )
    if tls and transport != "websocket":
        raise UsageError(f"{where}: tls runs over WebSocket only so far, not {transport}")


def check_payload(payload_bytes: int, kind: str = "text") -> None:
    minimum, needs = MIN_PAYLOAD_BYTES, "the header needs"
    if kind == "json":
        minimum, needs = MIN_JSON_PAYLOAD_BYTES, "a JSON object with the header needs"
    if not minimum <= payload_bytes <= MAX_PAYLOAD_BYTES:
        raise UsageError(
            f"payload of {payload_bytes} bytes is outside {minimum}..{MAX_PAYLOAD_BYTES}"
            f" ({needs} {minimum}; servers accept at most "
            f"{FAIRNESS.max_message_bytes} bytes per message)"
        )


def check_slice(name: str, slice_s: float, mode: str) -> None:
    check_positive(name, slice_s, allow_zero=True)
    if slice_s and not modes.get(mode).sliceable:
        sliced = [m.name for m in modes.all_modes() if m.sliceable]
        raise UsageError(f"{name} applies to {' and '.join(sliced)} mode only")
    if 0 < slice_s < MIN_SLICE_S:
        raise UsageError(f"{name} must be 0 (no slicing) or at least {MIN_SLICE_S} s")


def check_transport(
    where: str, transport: str, protocols: list[str], kinds: list[str], ack: bool,
    mode: str = "closed",
) -> None:  # fmt: skip
    if transport not in TRANSPORTS:
        raise UsageError(f"{where}: transport must be one of {', '.join(TRANSPORTS)}")
    if transport == POLLING_UPGRADE and (
        POLLING_UPGRADE not in modes.get(mode).transports or any(p != "socketio" for p in protocols)
    ):
        taking = [m.name for m in modes.all_modes() if POLLING_UPGRADE in m.transports]
        raise UsageError(
            f"{where}: {POLLING_UPGRADE} (Socket.IO's default path) applies to "
            f"{' and '.join(taking)} mode on Socket.IO servers only"
        )
    if transport == "polling":
        if any(p != "socketio" for p in protocols):
            raise UsageError(f"{where}: long-polling is a Socket.IO transport; raw servers lack it")
        if any(k != "text" for k in kinds) or ack:
            raise UsageError(f"{where}: long-polling runs text echoes without acks only")


def _select_servers(entry: Any, where: str) -> Any:
    """The entry with a selector in ``servers`` replaced by the names it selects."""
    if not isinstance(entry, dict) or not isinstance(entry.get("servers"), str):
        return entry
    if entry["servers"] not in SELECTORS:
        raise UsageError(
            f"{where}: servers must be a list of names or one of {', '.join(SELECTORS)}, "
            f"got {entry['servers']!r}"
        )
    return {**entry, "servers": select(entry["servers"], str(entry.get("scenario", "")))}


def validate_entry(entry: dict[str, Any], where: str) -> None:
    own_options = modes.all_options()
    for key, value in entry.items():
        if key in own_options and key not in _ENTRY_KEYS:
            continue  # a mode's own option: its check (modes.check_options) validates it
        if key not in _ENTRY_KEYS:
            raise UsageError(f"{where}: unknown key {key!r}")
        if not isinstance(value, _ENTRY_KEYS[key]) or isinstance(value, bool) != (
            key in _BOOL_KEYS
        ):
            raise UsageError(f"{where}: {key} has the wrong type ({value!r})")
    for key in _REQUIRED:
        if key not in entry:
            raise UsageError(f"{where}: missing key {key!r}")
    for server in entry["servers"]:
        if server not in SERVERS:
            raise UsageError(f"{where}: unknown server {server!r} (known: {', '.join(SERVERS)})")
    if not isinstance(entry["servers"], list) or not entry["servers"]:
        raise UsageError(f"{where}: servers must name at least one server")
    for loop in entry.get("loops", ["uvloop"]):
        if loop not in LOOPS:
            raise UsageError(f"{where}: unknown loop {loop!r} (known: {', '.join(LOOPS)})")
    mode = entry["mode"]
    suite_modes = modes.names(suites_only=True)
    if mode not in suite_modes:
        raise UsageError(f"{where}: mode must be one of {', '.join(suite_modes)}, got {mode!r}")
    modes.check_options(modes.get(mode), entry, modes.Naming(where))
    check_tier_and_tls(
        where, entry.get("tier", EQUALISED), bool(entry.get("tls", False)), mode,
        entry.get("transport", "websocket"),
    )  # fmt: skip
    for kind in _as_list(entry.get("payload_kind", "text")):
        if kind not in PAYLOAD_KINDS:
            raise UsageError(
                f"{where}: payload_kind must be one of {', '.join(PAYLOAD_KINDS)}, got {kind!r}"
            )
    for key in ("connections", "inflight", "workers"):
        for value in _as_list(entry.get(key, 1)):
            check_positive(f"{where}: {key}", value)
    check_seconds(f"{where}: duration_s", entry.get("duration_s", 1))
    check_seconds(f"{where}: warmup_s", entry.get("warmup_s", 0), allow_zero=True)
    check_repeat(f"{where}: repeat", entry.get("repeat", 1))
    if "slice_s" in entry:
        check_slice(f"{where}: slice_s", entry["slice_s"], entry["mode"])
    check_transport(
        where,
        entry.get("transport", "websocket"),
        [SERVERS[s].protocol for s in entry["servers"]],
        _as_list(entry.get("payload_kind", "text")),
        entry.get("ack", False),
        mode,
    )
    for size in _as_list(entry.get("payload_bytes", 32)):
        check_positive(f"{where}: payload_bytes", size)
        for kind in _as_list(entry.get("payload_kind", "text")):
            check_payload(size, kind)
    for workers in _as_list(entry.get("server_workers", 1)):
        check_server_workers(
            f"{where}: server_workers", workers, mode, entry.get("transport", "websocket")
        )


def parse_suite(text: str, name: str) -> Suite:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"suite {name!r}: malformed TOML: {exc}") from exc
    unknown = set(data) - _SUITE_KEYS
    if unknown:
        raise UsageError(f"suite {name!r}: unknown key {sorted(unknown)[0]!r}")
    entries = data.get("run", [])
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"suite {name!r}: needs at least one [[run]] entry")
    for index, entry in enumerate(entries):
        where = f"suite {name!r}, run {index + 1}"
        entries[index] = entry = _select_servers(entry, where)
        validate_entry(entry, where)
    repeat = data.get("repeat", 1)
    check_repeat(f"suite {name!r}: repeat", repeat)
    return Suite(name, str(data.get("description", "")), int(repeat), tuple(entries))


def load_suite(name: str) -> Suite:
    if name not in SUITES:
        raise UsageError(f"unknown suite {name!r} (known: {', '.join(SUITES)})")
    text = resources.files(__package__).joinpath(f"{name}.toml").read_text()
    return parse_suite(text, name)


def entries_for_scenario(scenario: str) -> list[dict[str, Any]]:
    """The scenario's entries as the default suite runs it (else as the full suite does)."""
    for suite_name in ("default", "full"):
        found = [e for e in load_suite(suite_name).entries if e["scenario"] == scenario]
        if found:
            return found
    known = sorted({s for n in ("default", "full") for s in load_suite(n).scenarios})
    raise UsageError(f"unknown scenario {scenario!r} (known: {', '.join(known)})")


def _loop_server_pairs(loops: list[str], servers: list[str]) -> list[tuple[str, str]]:
    """(loop, server) in the order cells run: loop by loop, the servers of one loop together
    (consecutive cells share a time-sliced run); a server on none of the loops (Node's one
    loop) once, on its own loop, with the first loop's servers."""
    others = [(SERVERS[s].loops[0], s) for s in servers if not set(loops) & set(SERVERS[s].loops)]
    pairs = []
    for index, loop in enumerate(loops):
        pairs += [(loop, s) for s in servers if loop in SERVERS[s].loops]
        pairs += others if index == 0 else []
    return pairs or others


def expand(
    entries: list[dict[str, Any]] | tuple[dict[str, Any], ...],
    repeat: int,
    override_entries: bool = False,
    checked: bool = False,
) -> list[RunSpec]:
    """All cells of the entries, repeated in interleaved passes: pass ``r`` holds every cell
    whose entry repeats at least ``r`` times (an entry's own ``repeat``, else ``repeat``;
    ``override_entries``: ``repeat`` for all, as ``--repeat`` asks). Entries are validated
    (``validate_entry``) or, ``checked``, built from options checked already (the command
    line's, whose common settings the mode's checks have seen under their flags' names)."""
    cells: list[tuple[int, RunSpec]] = []
    for entry in entries:
        times = repeat if override_entries else int(entry.get("repeat", repeat))
        mode = modes.get(entry["mode"])
        # The mode's options with their defaults, and what follows from them (memory: its
        # connections are its steps); a list is an axis of the matrix.
        own = modes.check_options(
            mode, entry, modes.Naming(f"scenario {entry['scenario']}"), validate=not checked
        )
        axes = itertools.product(
            _as_list(entry.get("payload_bytes", 32)),
            _as_list(entry.get("payload_kind", "text")),
            _as_list(entry.get("connections", own.get("connections", 10))),
            _as_list(own.get("rate_msgs_s", 0.0)),
            _as_list(own.get("rate_conns_s", 0.0)),
            _as_list(entry.get("server_workers", 1)),
            _loop_server_pairs(entry.get("loops", ["uvloop"]), entry["servers"]),
        )
        scalars = {k: v for k, v in own.items() if not isinstance(v, list)}
        fixed = {k: v for k, v in scalars.items() if k in _SPEC_FIELDS and k != "connections"}
        params = tuple(sorted((k, v) for k, v in scalars.items() if k not in _SPEC_FIELDS))
        for (payload_bytes, payload_kind, connections, rate, conns_rate, server_workers,
             (loop, server)) in axes:  # fmt: skip
            cells.append((times, RunSpec(**{
                    "scenario": entry["scenario"],
                    "server": server,
                    "protocol": SERVERS[server].protocol,
                    "loop": loop,
                    "mode": entry["mode"],
                    "connections": connections,
                    "payload_bytes": payload_bytes,
                    "payload_kind": payload_kind,
                    "warmup_s": float(entry.get("warmup_s", 2.0)),
                    "duration_s": float(entry["duration_s"]),
                    **fixed,
                    "rate_msgs_s": float(rate),
                    "rate_conns_s": float(conns_rate),
                    "inflight": entry.get("inflight", 1),
                    "ack": entry.get("ack", False),
                    "workers": entry.get("workers", 1),
                    "transport": entry.get("transport", "websocket"),
                    # Several processes run alone: slices load one server process each.
                    "slice_s": float(
                        entry.get("slice_s", DEFAULT_SLICE_S if mode.sliceable else 0)
                    ) if server_workers == 1 else 0.0,
                    "server_workers": server_workers,
                    "tier": entry.get("tier", EQUALISED),
                    "tls": entry.get("tls", False),
                    "params": params,
                })))  # fmt: skip
    passes = max((times for times, _ in cells), default=0)
    return [
        RunSpec(**{**cell.as_dict(), "repeat": r})
        for r in range(1, passes + 1)
        for times, cell in cells
        if r <= times
    ]
