"""Fan-out accounting: every delivery checked and counted per receiver."""

from __future__ import annotations

import pytest

from bench.load.fanout import FanoutBook
from bench.protocol.exchange import payload

PREFIX = b'42["fanout","'


def frame(seq: int) -> bytes:
    return PREFIX + payload(seq, 1_000 * seq, "text", 40) + b'"]'


def book_with(messages: int, recipients: int, first_measured: int = 0) -> FanoutBook:
    book = FanoutBook(recipients, seq_offset=len(PREFIX))
    for seq in range(messages):
        book.publish(seq, 1_000 * seq, frame(seq))
    book.first_measured = first_measured
    return book


def test_every_delivery_counts_once_and_is_timed_from_the_intended_publish_time() -> None:
    book = book_with(messages=3, recipients=2)
    for seq in range(3):
        book.deliver(0, frame(seq), 1_000 * seq + 50)
        book.deliver(1, frame(seq), 1_000 * seq + 70 + seq)
    counts = book.counts_summary()
    assert (counts.published, counts.expected, counts.delivered) == (3, 6, 6)
    assert (counts.missing, counts.duplicated, counts.out_of_order, counts.unexpected) == (
        0, 0, 0, 0,
    )  # fmt: skip
    assert sorted(book.delivery_latencies_ns()) == [50, 50, 50, 70, 71, 72]
    assert book.per_message_ns() == ([50, 50, 50], [50, 50, 50], [70, 71, 72])


def test_drops_duplicates_reordering_and_corruption_are_each_counted() -> None:
    book = book_with(messages=4, recipients=3)
    for receiver in range(3):
        for seq in range(4):
            if (receiver, seq) == (1, 2):
                continue  # dropped
            book.deliver(receiver, frame(seq), 1_000 * seq + 10)
    book.deliver(2, frame(1), 9_999)  # duplicated, and late
    book.deliver(0, frame(3)[:-3] + b'x"]', 5)  # corrupted
    book.deliver(0, b"garbage", 5)  # not a message at all
    book.deliver(2, frame(0)[: len(PREFIX)] + b"00000009" + frame(0)[len(PREFIX) + 8 :], 5)
    counts = book.counts_summary()
    assert counts.delivered == 11 and counts.missing == 1
    assert counts.duplicated == 1 and counts.unexpected == 3
    # The duplicate is not timed again; a late first delivery after a later message is.
    assert len(book.delivery_latencies_ns()) == 11
    book.deliver(1, frame(2), 50_000)
    assert book.counts_summary().out_of_order == 1


def test_warm_up_messages_are_not_accounted() -> None:
    book = book_with(messages=5, recipients=1, first_measured=2)
    for seq in (0, 2, 3):  # 1 and 4 never arrive
        book.deliver(0, frame(seq), 1_000 * seq + 1)
    counts = book.counts_summary()
    assert (counts.published, counts.delivered, counts.missing) == (3, 2, 1)
    assert book.delivery_latencies_ns() == [1, 1]


def test_the_median_receiver_is_a_measured_one() -> None:
    book = book_with(messages=1, recipients=4)
    for receiver, latency in enumerate([40, 10, 30, 20]):
        book.deliver(receiver, frame(0), latency)
    assert book.per_message_ns() == ([10], [20], [40])


def test_messages_are_published_in_order() -> None:
    book = FanoutBook(1, 0)
    with pytest.raises(ValueError, match="in order"):
        book.publish(1, 0, b"")


def test_slow_receivers_are_counted_apart_and_not_timed() -> None:
    book = FanoutBook(4, seq_offset=len(PREFIX), slow=1)  # receiver 0 reads slowly
    for seq in range(2):
        book.publish(seq, 1_000 * seq, frame(seq))
    for receiver in range(4):
        book.deliver(receiver, frame(0), 100 + receiver)
    book.deliver(1, frame(1), 1_500)
    fast, slow = book.counts_summary(), book.counts_summary(slow=True)
    assert (fast.recipients, fast.delivered, fast.missing) == (3, 4, 2)
    assert (slow.recipients, slow.delivered, slow.missing) == (1, 1, 1)
    assert sorted(book.delivery_latencies_ns()) == [101, 102, 103, 500]  # fast ones only


def test_scale_out_splits_latency_by_the_publishers_process_and_counts_per_process() -> None:
    book = book_with(messages=3, recipients=4, first_measured=1)
    book.workers = [0, 1, 0, 1]
    book.publisher_worker = 1
    for seq in range(3):
        for receiver in range(4):
            if (receiver, seq) != (2, 2):  # receiver 2 (process 0) misses message 2
                book.deliver(receiver, frame(seq), 1_000 * seq + 10 * (receiver + 1))
    book.deliver(3, frame(1), 5_000)  # a duplicate on process 1
    local, remote = book.split_latencies_ns()
    # Measured messages 1 and 2 only; receivers 1 and 3 share the publisher's process.
    assert sorted(local) == [20, 20, 40, 40]
    assert sorted(remote) == [10, 10, 30]
    by_worker = book.counts_by_worker()
    assert {w: (c.receivers, c.delivered, c.missing, c.duplicated)
            for w, c in by_worker.items()} == {0: (2, 3, 1, 0), 1: (2, 4, 0, 1)}  # fmt: skip


def test_without_scale_out_nothing_is_split() -> None:
    book = book_with(messages=2, recipients=2)
    for seq in range(2):
        book.deliver(0, frame(seq), 1_000 * seq + 5)
    assert book.split_latencies_ns() == ([], [])
    assert list(book.counts_by_worker()) == [-1]
