"""Thresholds for the regression gate, read from TOML and validated (pure).

A metric has a direction (which way is better) and a tolerance in percent; overrides narrow a
tolerance to a scenario and/or a server. Errors have no tolerance: any error fails. Unknown
keys, wrong types and unknown metrics are refused with one line naming them.

    [metrics.throughput]
    direction = "higher"
    tolerance_pct = 10

    [[override]]
    metric = "p99"
    server = "socketio-asgi"
    tolerance_pct = 60
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bench import modes
from bench.errors import UsageError

Direction = Literal["higher", "lower"]
# The metrics the gate knows, and the summary.csv column prefix (or column) each one reads.
METRIC_COLUMNS = {
    "throughput": "throughput",
    "efficiency": "efficiency",  # messages per server CPU-second
    "p50": "p50",
    "p99": "p99",
    "memory": "mem_kib_per_conn",
    "wire_bytes": "wire_bytes_up_per_msg_median",
    "capacity": "capacity_msgs_s_median",
}


def metric_columns() -> dict[str, str]:
    """The gate's own metrics, then every mode's summary metrics by their prefix (bench.modes:
    summary.csv has ``{prefix}_median`` and its interval), so a mode's metric can be gated."""
    own = {
        m.prefix: m.prefix
        for mode in modes.all_modes()
        for m in mode.metrics or ()
        if m.prefix not in METRIC_COLUMNS
    }
    return {**METRIC_COLUMNS, **own}


METRIC_KEYS = {"direction", "tolerance_pct"}
OVERRIDE_KEYS = {"metric", "scenario", "server", "tolerance_pct"}
TOP_KEYS = {"metrics", "override"}


@dataclass(frozen=True)
class MetricRule:
    metric: str
    direction: Direction
    tolerance_pct: float


@dataclass(frozen=True)
class Override:
    metric: str
    tolerance_pct: float
    scenario: str | None = None
    server: str | None = None

    def applies(self, metric: str, scenario: str, server: str) -> bool:
        return (
            self.metric == metric
            and self.scenario in (None, scenario)
            and self.server in (None, server)
        )


@dataclass(frozen=True)
class Thresholds:
    rules: dict[str, MetricRule]
    overrides: tuple[Override, ...] = ()

    def tolerance_pct(self, metric: str, scenario: str, server: str) -> float:
        """The most specific override wins (scenario and server over one of them over none)."""
        matching = [o for o in self.overrides if o.applies(metric, scenario, server)]
        if not matching:
            return self.rules[metric].tolerance_pct
        best = max(matching, key=lambda o: (o.scenario is not None) + (o.server is not None))
        return best.tolerance_pct


def _tolerance(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise UsageError(f"{where}: tolerance_pct must be a number >= 0, not {value!r}")
    return float(value)


def parse_thresholds(data: dict[str, Any], source: str = "thresholds") -> Thresholds:
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise UsageError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
    metrics = data.get("metrics", {})
    if not isinstance(metrics, dict) or not metrics:
        raise UsageError(f"{source}: a [metrics.NAME] table is needed for each gated metric")
    rules: dict[str, MetricRule] = {}
    for name, rule in metrics.items():
        where = f"{source}: [metrics.{name}]"
        known = metric_columns()
        if name not in known:
            raise UsageError(f"{where}: unknown metric (known: {', '.join(known)})")
        if not isinstance(rule, dict):
            raise UsageError(f"{where}: must be a table")
        extra = set(rule) - METRIC_KEYS
        if extra:
            raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        direction = rule.get("direction")
        if direction not in ("higher", "lower"):
            raise UsageError(f'{where}: direction must be "higher" or "lower"')
        rules[name] = MetricRule(name, direction, _tolerance(rule.get("tolerance_pct"), where))
    overrides = []
    raw_overrides = data.get("override", [])
    if not isinstance(raw_overrides, list):
        raise UsageError(f"{source}: override must be an array of tables ([[override]])")
    for index, entry in enumerate(raw_overrides, 1):
        where = f"{source}: override {index}"
        if not isinstance(entry, dict):
            raise UsageError(f"{where}: must be a table")
        extra = set(entry) - OVERRIDE_KEYS
        if extra:
            raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        if entry.get("metric") not in rules:
            raise UsageError(f"{where}: metric must be one of those under [metrics]")
        for key in ("scenario", "server"):
            if key in entry and not isinstance(entry[key], str):
                raise UsageError(f"{where}: {key} must be a string")
        overrides.append(
            Override(
                entry["metric"],
                _tolerance(entry.get("tolerance_pct"), where),
                entry.get("scenario"),
                entry.get("server"),
            )
        )
    return Thresholds(rules, tuple(overrides))


def load_thresholds(path: Path) -> Thresholds:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as error:
        raise UsageError(f"cannot read thresholds {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML ({error})") from None
    return parse_thresholds(data, str(path))
