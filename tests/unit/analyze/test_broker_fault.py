"""What a broker fault did, message by message: lost broadcasts, when each process recovered,
and the process that never did, named."""

from __future__ import annotations

import math

from bench.analyze.broker_fault import NS_PER_S, analyse

# Ten messages, one every 0.1 s; the broker came back at 0.45 s.
INTENDED = [i * NS_PER_S // 10 for i in range(10)]
RESTART = 45 * NS_PER_S // 100
RECEIVERS = {0: 3, 1: 2}


def test_losses_and_each_processs_recovery_from_the_restart() -> None:
    delivered = {
        0: [3] * 10,  # the publisher's own process: never touched the broker
        1: [2, 2, 0, 0, 0, 0, 1, 2, 2, 2],  # lost 2-5, message 6 half, whole again from 7
    }
    fault = analyse(INTENDED, delivered, RECEIVERS, RESTART)
    assert fault.lost_broadcasts == 5
    # Process 0: message 5 (0.5 s) is the first after the restart; process 1: message 7.
    assert fault.per_worker_s[0] == 0.05
    assert math.isclose(fault.per_worker_s[1], 0.25)
    assert math.isclose(fault.recovery_s, 0.25)
    assert fault.note == ""


def test_a_process_that_did_not_recover_is_named_and_leaves_no_recovery_time() -> None:
    delivered = {0: [3] * 10, 1: [2, 2, 0, 0, 0, 0, 0, 0, 0, 0]}
    fault = analyse(INTENDED, delivered, RECEIVERS, RESTART)
    assert fault.lost_broadcasts == 8
    assert math.isnan(fault.recovery_s) and math.isnan(fault.per_worker_s[1])
    assert fault.note == (
        "server worker 1 did not recover within the run (none of the 5 messages published in "
        "the 0.5 s after the broker's restart reached all its 2 receivers)"
    )


def test_nothing_published_after_the_restart_says_so() -> None:
    fault = analyse(INTENDED, {0: [3] * 10, 1: [2] * 10}, RECEIVERS, 2 * NS_PER_S)
    assert math.isnan(fault.recovery_s)
    assert fault.note == "no message was published after the broker's restart"
    assert fault.lost_broadcasts == 0
