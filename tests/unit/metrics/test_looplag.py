from __future__ import annotations

import math
from pathlib import Path

from bench.metrics.looplag import lag_ms_in_window, read_samples


def test_samples_outside_the_window_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "lag.txt"
    lines = [f"{t} {1_000_000 if t < 100 else 50_000_000}" for t in range(0, 200)]
    path.write_text("\n".join(lines) + "\nnot a sample\n")
    samples = read_samples(path)
    assert len(samples) == 200
    assert lag_ms_in_window(samples, 0, 99) == (1.0, 1.0)
    assert lag_ms_in_window(samples, 100, 199) == (50.0, 50.0)
    assert lag_ms_in_window(samples, 50, 149)[1] == 50.0
    assert all(math.isnan(v) for v in lag_ms_in_window(samples, 500, 600))
    assert read_samples(tmp_path / "missing.txt") == []
