"""Broadcast fan-out accounting: which receiver got which published message, when (pure).

The publisher registers each message (its sequence number, intended publish time and the exact
frame every receiver must get); each delivery is checked byte for byte against that frame and
counted per receiver. From that come the exact figures: deliveries expected, made, missing,
duplicated and out of order, and latencies from the *intended* publish time (open loop: a
stalled server shows in them) per delivery and per message (first, median and last receiver).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from bench.load.plan import WorkerReport
from bench.protocol.exchange import SEQ_DIGITS


@dataclass(frozen=True)
class FanoutCounts:
    published: int  # messages in the measured window
    recipients: int
    delivered: int  # distinct (receiver, message) pairs received
    missing: int
    duplicated: int
    out_of_order: int
    unexpected: int  # frames that are no published message's

    @property
    def expected(self) -> int:
        return self.published * self.recipients


class FanoutBook:
    """Published messages and their deliveries to ``recipients`` receivers.

    ``seq_offset`` is where a frame's sequence number starts (after Socket.IO's event prefix).
    Only messages numbered from ``first_measured`` on count (earlier ones are the warm-up).
    Receivers numbered below ``slow`` read slowly on purpose: the figures of the others (the
    fast ones) and theirs are kept apart.
    """

    def __init__(self, recipients: int, seq_offset: int, slow: int = 0) -> None:
        self.recipients = recipients
        self.slow = slow
        self.seq_offset = seq_offset
        self.first_measured = 0
        self.frames: list[bytes] = []
        self.intended_ns: list[int] = []
        # Per receiver, per message: how many times it arrived (capped at 255).
        self.counts = [bytearray() for _ in range(recipients)]
        self.highest = [-1] * recipients
        self.out_of_order = 0
        self.unexpected = 0
        # Per message: latency of each first delivery to a fast receiver, in arrival order (ns).
        self.latencies_ns: list[list[int]] = []
        # Scale-out: the server process each receiver and the publisher are on (-1: one
        # process, no split); deliveries to receivers on the publisher's process ("local")
        # and on the others ("remote", across the broker), per message.
        self.workers = [-1] * recipients
        self.publisher_worker = -1
        self.local_ns: list[list[int]] = []
        self.remote_ns: list[list[int]] = []

    def publish(self, seq: int, intended_ns: int, frame: bytes) -> None:
        if seq != len(self.frames):
            raise ValueError(f"messages must be published in order (got {seq})")
        self.frames.append(frame)
        self.intended_ns.append(intended_ns)
        self.latencies_ns.append([])
        self.local_ns.append([])
        self.remote_ns.append([])
        for counts in self.counts:
            counts.append(0)

    def deliver(self, receiver: int, data: bytes, now_ns: int) -> None:
        """One frame that reached ``receiver`` at ``now_ns``."""
        start = self.seq_offset
        try:
            seq = int(data[start : start + SEQ_DIGITS], 16)
        except ValueError:
            self.unexpected += 1
            return
        if seq >= len(self.frames) or data != self.frames[seq]:
            self.unexpected += 1
            return
        counts = self.counts[receiver]
        seen = counts[seq]
        if seen < 255:
            counts[seq] = seen + 1
        if seen:
            return  # a duplicate: counted in counts, not timed again
        if seq < self.highest[receiver]:
            self.out_of_order += 1
        else:
            self.highest[receiver] = seq
        if receiver >= self.slow:
            latency = now_ns - self.intended_ns[seq]
            self.latencies_ns[seq].append(latency)
            if self.publisher_worker >= 0:
                local = self.workers[receiver] == self.publisher_worker
                (self.local_ns if local else self.remote_ns)[seq].append(latency)

    def counts_summary(self, slow: bool = False) -> FanoutCounts:
        """The fast receivers' counts (``slow``: the slow ones'); unexpected frames and
        out-of-order deliveries are everyone's."""
        measured = range(self.first_measured, len(self.frames))
        chosen = self.counts[: self.slow] if slow else self.counts[self.slow :]
        delivered = duplicated = 0
        for counts in chosen:
            window = counts[self.first_measured :]
            delivered += len(window) - window.count(0)
            duplicated += sum(c - 1 for c in window if c > 1)
        return FanoutCounts(
            published=len(measured),
            recipients=len(chosen),
            delivered=delivered,
            missing=len(measured) * len(chosen) - delivered,
            duplicated=duplicated,
            out_of_order=self.out_of_order,
            unexpected=self.unexpected,
        )

    def delivery_latencies_ns(self) -> list[int]:
        """Every first delivery of a measured message to a fast receiver."""
        return [t for seq in range(self.first_measured, len(self.frames))
                for t in self.latencies_ns[seq]]  # fmt: skip

    def per_message_ns(self) -> tuple[list[int], list[int], list[int]]:
        """Per measured message that reached a fast receiver: its first, median and last fast
        receiver's latency (the median of an even count is the lower middle one: a latency that was
        measured, not an average of two)."""
        first: list[int] = []
        median: list[int] = []
        last: list[int] = []
        for seq in range(self.first_measured, len(self.frames)):
            times = sorted(self.latencies_ns[seq])
            if times:
                first.append(times[0])
                median.append(times[(len(times) - 1) // 2])
                last.append(times[-1])
        return first, median, last

    def split_latencies_ns(self) -> tuple[list[int], list[int]]:
        """Scale-out: every first delivery of a measured message to a fast receiver on the
        publisher's server process, and to one on another process."""
        measured = range(self.first_measured, len(self.frames))
        local = [t for seq in measured for t in self.local_ns[seq]]
        remote = [t for seq in measured for t in self.remote_ns[seq]]
        return local, remote

    def counts_by_worker(self) -> dict[int, WorkerCounts]:
        """Scale-out: the fast receivers' counts per server process they are on."""
        measured = len(self.frames) - self.first_measured
        found: dict[int, WorkerCounts] = {}
        for receiver in range(self.slow, self.recipients):
            window = self.counts[receiver][self.first_measured :]
            delivered = len(window) - window.count(0)
            duplicated = sum(c - 1 for c in window if c > 1)
            before = found.get(self.workers[receiver], WorkerCounts(0, 0, 0, 0))
            found[self.workers[receiver]] = WorkerCounts(
                before.receivers + 1, before.delivered + delivered,
                before.missing + measured - delivered, before.duplicated + duplicated,
            )  # fmt: skip
        return dict(sorted(found.items()))

    def deliveries_by_worker(self) -> dict[int, list[int]]:
        """Scale-out: per server process, per measured message, how many of the process's
        fast receivers got it (for what a broker fault did, message by message)."""
        measured = range(self.first_measured, len(self.frames))
        found: dict[int, list[int]] = {}
        for receiver in range(self.slow, self.recipients):
            counts = self.counts[receiver]
            row = found.setdefault(self.workers[receiver], [0] * len(measured))
            for index, seq in enumerate(measured):
                if counts[seq]:
                    row[index] += 1
        return dict(sorted(found.items()))

    def measured_intended_ns(self) -> list[int]:
        return self.intended_ns[self.first_measured :]


@dataclass(frozen=True)
class WorkerCounts:
    """One server process's share of a scale-out fan-out: its receivers and their counts."""

    receivers: int
    delivered: int
    missing: int
    duplicated: int


# --- Across generator workers: the reports' per-process counts (keys: worker ids as text) ----


def summed_per_worker(dicts: list[dict[str, int]]) -> dict[str, int]:
    """Per server process, the counts of several reports added (zeros kept)."""
    total: Counter[str] = Counter()
    for counts in dicts:
        total.update(counts)
    return dict(total)


def deaf_workers(reports: list[WorkerReport], server_workers: int) -> list[str]:
    """Scale-out fan-out: one phrase per server process whose receivers got nothing (or that
    got no receivers at all), naming it; [] when every process delivered."""
    receivers = summed_per_worker([r.worker_receivers for r in reports])
    delivered = summed_per_worker([r.worker_delivered for r in reports])
    found = []
    for worker in range(server_workers):
        key = str(worker)
        if receivers.get(key, 0) == 0:
            found.append(f"server worker {worker} got no receivers (the kernel put them all "
                         "on the others)")  # fmt: skip
        elif delivered.get(key, 0) == 0:
            found.append(f"server worker {worker} delivered nothing to its "
                         f"{receivers[key]:,} receivers")  # fmt: skip
    return found
