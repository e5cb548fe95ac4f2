from __future__ import annotations

import math

from bench.calibration import MIN_HEADROOM, full_core_rate, headroom
from bench.load.plan import WorkerReport
from bench.metrics.sampling import WindowUsage
from bench.results import row
from bench.runner import RunResult
from bench.spec import RunSpec


def spec(**changes: object) -> RunSpec:
    fields: dict = dict(scenario="echo", server="aiohttp", protocol="raw", loop="uvloop",
                        mode="closed", connections=10, payload_bytes=32, payload_kind="text",
                        warmup_s=1.0, duration_s=10.0)  # fmt: skip
    fields.update(changes)
    return RunSpec(**fields)


def report(received: int, index: int = 0) -> WorkerReport:
    from bench.metrics import histogram as hist

    empty = hist.encode(hist.new_histogram())
    return WorkerReport(index, 10, received, received, 0, 0, 0, empty, empty, empty, 0.1)


def test_a_round_that_did_not_get_its_whole_core_is_scaled_to_one() -> None:
    # 34.5k msgs/s with 29% of the core (the hypervisor took the rest): about 119k with it.
    assert math.isclose(full_core_rate(34_500, 29.0), 34_500 / 0.29)
    assert full_core_rate(120_000, 99.0) == 120_000 / 0.99
    # A whole core (or more, as sampling can read), or no CPU figure: the rate as measured.
    assert full_core_rate(120_000, 100.0) == 120_000
    assert full_core_rate(120_000, 103.0) == 120_000
    assert full_core_rate(120_000, math.nan) == 120_000
    assert full_core_rate(120_000, 0.0) == 120_000


def test_headroom() -> None:
    assert headroom(100_000, 50_000, 1) == 2.0
    assert headroom(100_000, 50_000, 2) == 4.0
    assert math.isinf(headroom(100_000, 0, 1))


def result_with(throughput: float, ceiling: float, cpu: float = 50.0) -> RunResult:
    result = RunResult(spec(), "r1", "now", reports=[report(int(throughput * 10))])
    result.client_usage = [WindowUsage(cpu, 0, 10)]
    result.generator_ceiling_msgs_s = ceiling
    return result


def test_low_headroom_marks_the_row_client_bound_even_when_cpu_looks_fine() -> None:
    near = row(result_with(throughput=80_000, ceiling=100_000))
    assert near["generator_headroom"] == 1.25 < MIN_HEADROOM
    assert near["client_bound"] is True
    far = row(result_with(throughput=10_000, ceiling=100_000))
    assert far["generator_headroom"] == 10.0 and far["client_bound"] is False
    busy = row(result_with(throughput=10_000, ceiling=100_000, cpu=95.0))
    assert busy["client_bound"] is True


def test_two_workers_counts_are_summed() -> None:
    result = RunResult(spec(workers=2), "r1", "now", reports=[report(300, 0), report(700, 1)])
    values = row(result)
    assert values["sent"] == values["received"] == 1000
    assert values["throughput_msgs_s"] == 100.0
