"""``wsbench`` with a bug injected inside a run: ``python -m tests.integration.faulty_harness run
ARGS...`` is ``wsbench run ARGS...`` whose first measured run raises ``RuntimeError`` when it
starts sampling, that is after the run's server and generator workers have started and
connected (the calibration before it is left alone). The harness must record that cell as
failed, stop every process it started, go on with the next cell and exit 3.
"""

from __future__ import annotations

import sys

from bench.cli import main
from bench.metrics.sampling import ProcessSampler

INJECTED = "injected: a bug inside a run"

_original_start = ProcessSampler.start
_raised = False


def _start_or_raise(self: ProcessSampler) -> None:
    global _raised
    # A cell's sampler watches its workers ("worker-0", or "worker-0-0" when time-sliced);
    # the calibration's watches a "client".
    if not _raised and any(role.startswith("worker-") for role in self.processes):
        _raised = True
        raise RuntimeError(INJECTED)
    _original_start(self)


if __name__ == "__main__":
    ProcessSampler.start = _start_or_raise  # type: ignore[method-assign]
    raise SystemExit(main(sys.argv[1:]))
