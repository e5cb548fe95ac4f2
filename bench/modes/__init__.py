"""The mode registry: what a kind of run (closed loop, connect storm, fan-out, ...) is, in one
record per mode, each in a module of its own beside this one.

A mode declares its options and their validation, the generator worker that runs it, how the
harness measures it, the columns it fills, its summary metrics and which way each is better,
its time model for the suite budget, and its progress line. The command line, the suite
loader, the runner, the results, the summary, the comparison and the time model read these
records; none of them names a mode. Adding a mode is a module and one line in ``_MODULES``
(or ``register`` for a mode defined elsewhere, as a test does).

This module is pure: records and checks, no sockets or processes. A mode's hooks that need the
runner import it inside the hook, so that the registry loads before the runner does.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bench.errors import UsageError

if TYPE_CHECKING:  # only for type hints: the runner imports the registry
    from bench.metrics.sampling import ProcessSampler
    from bench.runner import RunResult
    from bench.spec import RunSpec

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class ServerWrap:
    """The program a server runs under (a mode's ``server_wrapper``: callgrind), and how.

    ``env`` is added to the server's environment, or, with ``whole_env``, is all of it. For the
    harness's own servers, ``python`` replaces the interpreter's path ("" keeps it);
    ``prepare`` runs before each start with the server's command; ``cleanup`` runs once the
    server has stopped."""

    argv: list[str]
    env: dict[str, str]
    python: str = ""
    whole_env: bool = False
    cleanup: Callable[[], None] | None = None
    # Run before each start of the harness's own servers, given the server's command.
    prepare: Callable[[list[str]], Awaitable[None]] | None = None


@dataclass(frozen=True)
class Option:
    """A setting that only some modes take: its name in suites and RunSpec (``key``), its
    command-line flag, and its check (value and how to name it in a message, in; the value
    the cell holds, out; UsageError, one line, when it is bad)."""

    key: str
    flag: str  # "" for a suite's key with no flag (fan-out's broker_fault)
    help: str
    check: Callable[[Any, str], Any]
    type: type[int] | type[float] | None = float  # how argparse reads it (None: a comma list)
    required: bool = False
    default: Any = None  # when the mode takes it and it was not given
    # The value is one list, checked whole (memory's steps); otherwise a suite's list is an
    # axis of values, each checked.
    whole: bool = False


@dataclass(frozen=True)
class Metric:
    """A summary metric: ``{prefix}_median`` and its interval over repeats, from ``column``;
    ``better`` says which way is an improvement (compare and the gate); ``ratio``: also as
    the Socket.IO/raw ratio."""

    prefix: str
    column: str
    better: Better
    ratio: bool = True
    compared: bool = True  # by ``wsbench compare`` (efficiency: by the gate only)
    # A count that does not depend on time (instructions): the gate judges it without
    # intervals, and says so.
    deterministic: bool = False


# Settings common to every mode that a mode may refuse, and how a message names each.
RESTRICTIONS = ("workers", "inflight", "ack", "binary", "polling", "connections", "slice")

# Runner hooks (bench.runner): how a cell of the mode is measured when it is not one run of
# the mode's workers (capacity's search, reconnect's restart; called with spec, url, server,
# server_pid, pinning, log_dir, result); the window its server is sampled over (start signal
# and the workers' report times in, (start, end) ns out); what it reads from the process
# sampler after the standard run (spec, result, sampler, start_ns, reported_ns, server_pid).
RunHook = Callable[..., Awaitable[None]]
WindowHook = Callable[["RunSpec", "RunResult", int, int], "tuple[int, int]"]
SampleHook = Callable[["RunSpec", "RunResult", "ProcessSampler", int, int, int | None], None]


def _no_columns(result: RunResult) -> dict[str, Any]:
    return {}


def _no_progress(record: Mapping[str, Any]) -> str | None:
    return None


@dataclass(frozen=True)
class Mode:
    name: str
    help: str  # for --mode's help: what one cell of this mode does
    # The scenario an ad-hoc run of this mode is written under.
    scenario: str = "echo"
    # The one client stack the mode runs on, as (client label, worker module); None: echo over
    # either stack (bench.load.stacks picks by --client and transport).
    stack: tuple[str, str] | None = None
    options: tuple[Option, ...] = ()
    # Common settings the mode refuses (from RESTRICTIONS), and why, in a few words.
    refuses: tuple[str, ...] = ()
    refusal: str = ""
    # Why it cannot run against a server someone else started ("" when it can).
    target_refused: str = ""
    # Transports its cells may run over (Socket.IO servers; raw ones have WebSocket only).
    transports: tuple[str, ...] = ("websocket", "polling")
    in_suites: bool = True  # False: a command-line mode only (capacity: a search per cell)
    closed_loop: bool = False  # every echo triggers the next send (no schedule, no send lag)
    calibrated: bool = False  # rows judged against the generator's calibrated echo ceiling
    sliceable: bool = False  # servers of one pass share a time-sliced run
    scale_out: bool = False  # runs against several server processes (--server-workers)
    sharded: bool = False  # its generator can run as Dask shards (--cluster)
    # Its rows' received messages over the window are a throughput (not set-ups or a trickle).
    throughput: bool = True
    default_warmup_s: float | None = None
    default_duration_s: float | None = None
    extra_check: Callable[[Mapping[str, Any], str], None] | None = None
    # More RunSpec fields that follow from its checked options (memory: its connections).
    cell_fields: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    uss: bool = False  # the server's USS is sampled too (costly: memory cells only)
    # The program the server runs under, and its environment (instructions: callgrind), from
    # the cell, its log folder and whether the server is the harness's own (not --server-cmd).
    server_wrapper: Callable[[RunSpec, Path, bool], ServerWrap] | None = None
    # Why its cells cannot run on this machine (None: they can), and why a server's cannot
    # (""), each said in one line when those cells are skipped.
    missing: Callable[[], str | None] | None = None
    server_refused: Callable[[RunSpec], str] | None = None
    run: RunHook | None = None
    window: WindowHook | None = None
    sample: SampleHook | None = None
    # After the run: a failure that makes the cell failed ("" when none).
    check_result: Callable[[RunSpec, RunResult], str] | None = None
    # Errors beyond the workers' own count (reconnect: clients that never recovered; a broker
    # fault: deliveries its outage cost are the figure, not errors, so negative).
    extra_errors: Callable[[RunResult], int] | None = None
    # Results: the columns it fills (names, in order), and the function that fills them.
    columns: tuple[str, ...] = ()
    text_columns: tuple[str, ...] = ()  # of ``columns``: empty text, not NaN, when unfilled
    # Its workers' report histograms written to histograms.jsonl beside the common ones.
    histograms: tuple[str, ...] = ()
    fill: Callable[[RunResult], dict[str, Any]] = _no_columns
    target_rate: Callable[[RunSpec, RunResult], float] = lambda spec, result: math.nan
    # Summary: its metrics (None: the echo metrics), the column whose CV marks a cell unstable,
    # and columns carried as their median.
    metrics: tuple[Metric, ...] | None = None
    headline: str = "throughput_msgs_s"
    median_columns: tuple[str, ...] = ()
    # Adds to a summary record from the cell's valid runs (memory: one pass's own interval).
    summarize: Callable[[Any, dict[str, Any]], None] | None = None
    # Time model (bench.plan_time): seconds one cell (or time-sliced group) takes; None: the
    # echo model.
    time_s: Callable[[RunSpec, int], float] | None = None
    # Its figures in a progress line (None: the echo figures).
    progress: Callable[[Mapping[str, Any]], str | None] = _no_progress
    # Its own question in the report's verdict (summary frame in, a
    # bench.report.verdict.Verdict out; left out while "unmeasured"), and its own chart
    # (runs and summary frames in, a bench.report.charts.Chart or None out). The built-in
    # modes' questions and charts are themes across modes (bench.report).
    verdict: Callable[[Any], Any] | None = None
    chart: Callable[[Any, Any], Any] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.refuses) - set(RESTRICTIONS)
        if unknown:  # a typo would otherwise refuse nothing, silently
            raise ValueError(f"mode {self.name!r} refuses unknown settings {sorted(unknown)}")

    def option(self, key: str) -> Option | None:
        return next((o for o in self.options if o.key == key), None)


# Echo metrics (closed, open, capacity's probes; fan-out adds its own).
ECHO_METRICS = (
    Metric("throughput", "throughput_msgs_s", "higher"),
    Metric("p50", "p50_us", "lower"),
    Metric("p99", "p99_us", "lower"),
    Metric("efficiency", "msgs_per_cpu_s", "higher", ratio=False, compared=False),
    Metric(
        "efficiency_vs_generator",
        "efficiency_vs_generator",
        "higher",
        ratio=False,
        compared=False,
    ),
)

# The modes, in the order --mode lists them: one module each, under bench.modes.
_MODULES = (
    "closed", "open", "capacity", "connect", "fanout", "memory", "reconnect", "instructions",
)  # fmt: skip
_REGISTRY: dict[str, Mode] = {}


def register(mode: Mode) -> Mode:
    """Add a mode (one defined beside the registry's, as a test does); its name must be new."""
    _load()
    return _add(mode)


def _add(mode: Mode) -> Mode:
    if mode.name in _REGISTRY:
        raise ValueError(f"mode {mode.name!r} is registered already")
    _REGISTRY[mode.name] = mode
    return mode


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def _load() -> dict[str, Mode]:
    if not _REGISTRY:
        for module in _MODULES:
            _add(importlib.import_module(f"{__name__}.{module}").MODE)
    return _REGISTRY


def all_modes() -> tuple[Mode, ...]:
    return tuple(_load().values())


def names(suites_only: bool = False) -> tuple[str, ...]:
    return tuple(m.name for m in all_modes() if m.in_suites or not suites_only)


def get(name: str) -> Mode:
    found = _load().get(name)
    if found is None:
        raise UsageError(f"unknown mode {name!r} (known: {', '.join(names())})")
    return found


def all_options() -> dict[str, Option]:
    """Every mode's options by key (a key several modes take, such as ``rate_msgs_s``, once)."""
    found: dict[str, Option] = {}
    for mode in all_modes():
        for option in mode.options:
            found.setdefault(option.key, option)
    return found


def taking(key: str, suites_only: bool = False) -> list[str]:
    """The modes that take an option."""
    return [m.name for m in all_modes() if m.option(key) and (m.in_suites or not suites_only)]


def better_when() -> dict[str, Better]:
    """Which way each summary metric is better, over every mode."""
    found: dict[str, Better] = {}
    for mode in all_modes():
        for metric in mode.metrics or ECHO_METRICS:
            found.setdefault(metric.prefix, metric.better)
    return found


def mode_columns() -> list[str]:
    """Every mode's own columns, in registry order, each once."""
    seen: dict[str, None] = {}
    for mode in all_modes():
        seen.update(dict.fromkeys(mode.columns))
    return list(seen)


def median_columns() -> list[str]:
    seen: dict[str, None] = {}
    for mode in all_modes():
        seen.update(dict.fromkeys(mode.median_columns))
    return list(seen)


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


@dataclass(frozen=True)
class Naming:
    """How a message names options and modes: a suite's keys, or the command line's flags."""

    where: str = ""  # "suite 'x', run 2" (suites), "" (command line)
    flags: bool = False

    def option(self, key: str) -> str:
        if not self.flags:
            return key
        option = all_options().get(key)
        return option.flag if option else f"--{key.replace('_', '-')}"

    def modes(self, names: list[str]) -> str:
        if self.flags:
            return f"--mode {_listed(names)}"
        return f"{_listed(names)} mode{'s' if len(names) > 1 else ''}"

    def line(self, text: str) -> str:
        return f"{self.where}: {text}" if self.where else text


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _restricted(given: Mapping[str, Any]) -> dict[str, bool]:
    """Which of the common settings ``given`` (a suite entry, or the command line's) sets."""
    return {
        "workers": given.get("workers") not in (None, 1),
        "inflight": given.get("inflight") is not None,
        "ack": bool(given.get("ack")),
        "binary": any(k not in (None, "text") for k in _as_list(given.get("payload_kind"))),
        "polling": given.get("transport", "websocket") not in (None, "websocket"),
        "connections": given.get("connections") is not None,
        "slice": bool(given.get("slice_s")),
    }


def _restriction(name: str, naming: Naming) -> str:
    if name == "binary":  # set by any payload kind but text
        return "binary or json payloads"
    if name == "polling":
        return name
    if name == "slice":
        return "--slice" if naming.flags else "slice_s"
    return naming.option(name)


def check_options(
    mode: Mode, given: Mapping[str, Any], naming: Naming, validate: bool = True
) -> dict[str, Any]:
    """Check the settings of one cell's mode (one suite entry, or the command line's options:
    keys as in suites, values given only); returns the RunSpec fields its options set, with
    defaults. Every failure is one line (UsageError), named as ``naming`` says. Without
    ``validate``, only the values (checked before) and their defaults."""
    known = all_options() if validate else {}
    for key in given:
        if key in known and given[key] not in (None, False) and mode.option(key) is None:
            takers = taking(key, suites_only=not naming.flags)
            raise UsageError(
                naming.line(f"{naming.option(key)} applies to {naming.modes(takers)} only")
            )
    fields: dict[str, Any] = {}
    for option in mode.options:
        value = given.get(option.key)
        if value is None:
            if option.required and validate:
                raise UsageError(
                    naming.line(f"{naming.modes([mode.name])} needs {naming.option(option.key)}")
                )
            if option.default is not None:
                fields[option.key] = option.default
            continue
        name = naming.line(naming.option(option.key))
        if option.whole:
            fields[option.key] = option.check(value, name)
            continue
        checked = [option.check(v, name) for v in _as_list(value)]
        fields[option.key] = checked if isinstance(value, list) else checked[0]
    set_here = _restricted(given)
    offending = [r for r in mode.refuses if set_here[r]] if validate else []
    if offending:
        named = ", ".join(_restriction(r, naming) for r in offending)
        raise UsageError(naming.line(f"{naming.modes([mode.name])} {mode.refusal} (no {named})"))
    if mode.extra_check is not None and validate:
        mode.extra_check({**given, **fields}, naming.where or "")
    if mode.cell_fields is not None:
        fields.update(mode.cell_fields(fields))
    return fields


def check_positive(name: str, value: Any, allow_zero: bool = False) -> Any:
    # nan and inf parse as floats (from the command line and from TOML) but are no duration,
    # rate or count: inf would never end a run.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(
            f"{name} must be {'zero or more' if allow_zero else 'positive'}, got {value}"
        )
    return value


def positive(value: Any, name: str) -> Any:
    return check_positive(name, value)


def zero_or_more(value: Any, name: str) -> Any:
    return check_positive(name, value, allow_zero=True)


# The offered message rate, shared by the modes that send on a schedule (open loop, fan-out's
# publisher, reconnect's clients together).
RATE = Option(
    "rate_msgs_s", "--rate", "open, fanout, reconnect: total msgs/s offered", lambda v, n:
    float(positive(v, n)), required=True,
)  # fmt: skip


def rounded(value: float, digits: int = 1) -> float:
    return value if math.isnan(value) else round(value, digits)


def echo_figures(record: Mapping[str, Any]) -> str:
    """A progress line's figures for message rows: throughput and latency."""
    return (
        f"{record['throughput_msgs_s']:>9,.0f} msgs/s  p50 {record['p50_us']:>7,.0f} µs  "
        f"p99 {record['p99_us']:>7,.0f} µs"
    )
