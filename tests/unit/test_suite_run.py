"""Pure helpers of bench.suite_run: which CPUs are kept awake and how the stamp says so."""

from __future__ import annotations

from bench.analyze.compare import stamp_differences
from bench.runner import Pinning
from bench.suite_run import _pinning_dict, cpus_to_keep_awake

PINNED = Pinning(server_cpus=(0,), generator_cpus=(1, 2))


def test_the_pinned_cpus_are_kept_awake_unless_told_not_to() -> None:
    assert cpus_to_keep_awake(PINNED, True) == {0, 1, 2}
    assert cpus_to_keep_awake(PINNED, False) == frozenset()
    assert cpus_to_keep_awake(Pinning((), ()), True) == frozenset()  # one CPU: nothing pinned


def test_the_stamp_records_the_kept_cpus_and_compare_flags_a_difference() -> None:
    awake = {"pinning": _pinning_dict(PINNED, cpus_to_keep_awake(PINNED, True))}
    idle = {"pinning": _pinning_dict(PINNED, cpus_to_keep_awake(PINNED, False))}
    assert awake["pinning"]["cpus_kept_awake"] == [0, 1, 2]
    assert idle["pinning"]["cpus_kept_awake"] == []
    assert stamp_differences(idle, awake) == ["pinning.cpus_kept_awake: [] -> [0, 1, 2]"]
