"""Sequence gaps, replays and AllBlocksCleared, driven through the subscriber's message handler."""

from __future__ import annotations

from infergate.kvevents import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    EndpointBlockIndex,
    EventBatch,
    KvEventSubscriber,
    SequenceTracker,
    Verdict,
    encode_batch,
)
from infergate.kvevents.codec import encode_seq


def frames(seq: int, *events: object, encoding: str = "map") -> list[bytes]:
    payload = encode_batch(EventBatch(float(seq), tuple(events)), encoding)  # type: ignore[arg-type]
    return [b"kv@127.0.0.1:8000@m", encode_seq(seq), payload]


def stored(*hashes: int) -> BlockStored:
    return BlockStored(tuple(hashes), None, (), 16)


def test_tracker_verdicts() -> None:
    t = SequenceTracker()
    assert t.check(0).verdict is Verdict.RESTART
    t.applied(0)
    assert t.check(1).verdict is Verdict.NEXT
    t.applied(1)
    gap = t.check(5)
    assert gap.verdict is Verdict.GAP and gap.missing_from == 2 and not gap.restarted
    t.applied(5)
    lower = t.check(2)  # a restarted publisher whose batches 0 and 1 were lost
    assert lower.verdict is Verdict.GAP and lower.missing_from == 0 and lower.restarted
    late = SequenceTracker().check(9)
    assert late.verdict is Verdict.GAP and late.missing_from == 0


def test_index_match_and_medium() -> None:
    index = EndpointBlockIndex()
    index.apply(EventBatch(0.0, (stored(1, 2, 3), BlockStored((9,), None, (), 16, medium="CPU"))))
    assert index.match_prefix([1, 2, 3, 4]) == 3
    assert index.match_prefix([2, 3]) == 2 and index.match_prefix([5, 1]) == 0
    assert 9 not in index and index.stats.other_medium == 1
    index.apply(EventBatch(1.0, (BlockRemoved((2,), "GPU"),)))
    assert index.match_prefix([1, 2, 3]) == 1


async def test_in_order_batches_from_zero_make_a_reliable_index() -> None:
    index = EndpointBlockIndex()
    sub = KvEventSubscriber("tcp://127.0.0.1:1", index)
    assert not index.reliable
    await sub.handle(frames(0, stored(1, 2)))
    await sub.handle(frames(1, BlockRemoved((2,), "GPU"), encoding="array"))
    assert index.reliable and index.blocks == {1}


async def test_gap_without_replay_is_unreliable_until_all_blocks_cleared() -> None:
    index = EndpointBlockIndex()
    sub = KvEventSubscriber("tcp://127.0.0.1:1", index)
    await sub.handle(frames(0, stored(1)))
    await sub.handle(frames(3, stored(2)))  # 1 and 2 were lost
    assert not index.reliable and "missed batches 1..2" in index.reason
    assert index.blocks == {1, 2} and index.stats.gaps == 1  # still applied: a lower bound
    await sub.handle(frames(4, AllBlocksCleared(), stored(7)))
    assert index.reliable and index.blocks == {7}


async def test_joining_late_without_replay_is_unreliable_and_a_restart_resyncs() -> None:
    index = EndpointBlockIndex()
    sub = KvEventSubscriber("tcp://127.0.0.1:1", index)
    await sub.handle(frames(42, stored(1)))
    assert not index.reliable and "0..41" in index.reason
    await sub.handle(frames(0, stored(5)))  # the engine restarted: empty cache, then 5
    assert index.reliable and index.blocks == {5}


async def test_malformed_batch_counts_as_lost() -> None:
    index = EndpointBlockIndex()
    sub = KvEventSubscriber("tcp://127.0.0.1:1", index)
    await sub.handle(frames(0, stored(1)))
    await sub.handle([b"kv@x", encode_seq(1), b"\xc1garbage"])
    assert not index.reliable and "malformed batch 1" in index.reason
    assert index.stats.decode_errors == 1
    await sub.handle([b"only-one-frame"])
    assert index.stats.decode_errors == 2
    await sub.handle(frames(2, stored(2)))  # follows on, but the loss stays
    assert not index.reliable and index.blocks == {1, 2}


def test_an_index_that_outgrows_its_bound_was_missing_removals() -> None:
    index = EndpointBlockIndex(max_blocks=4)
    index.reset()
    index.apply(EventBatch(0.0, (stored(1, 2, 3, 4),)))
    assert index.reliable and len(index) == 4
    index.apply(EventBatch(1.0, (stored(5),)))
    assert not index.reliable and "removals were missed" in index.reason and len(index) == 0
    summary = index.describe()
    assert summary["reliable"] is False and summary["stored"] == 5 and summary["blocks"] == 0


async def test_a_batch_read_after_the_disconnect_does_not_make_the_index_reliable_again() -> None:
    """The publisher's last batch, sent before it closed, is read after the monitor reported the
    disconnect: it follows on, but the publisher may be gone (a restarted engine has an empty
    cache), so only a batch received after the reconnect restores trust."""
    import zmq

    index = EndpointBlockIndex()
    sub = KvEventSubscriber("tcp://127.0.0.1:1", index)
    sub._on_monitor({"event": zmq.EVENT_CONNECTED})
    await sub.handle(frames(0, stored(1, 2)))
    assert index.reliable
    sub._on_monitor({"event": zmq.EVENT_DISCONNECTED})
    await sub.handle(frames(1, stored(3)))  # in flight when the publisher closed
    assert not index.reliable and index.blocks == {1, 2, 3}  # applied, not trusted
    sub._on_monitor({"event": zmq.EVENT_CONNECTED})  # the same publisher, back after a blip
    await sub.handle(frames(2, stored(4)))
    assert index.reliable and index.reason == "reconnected without loss" and index.blocks == {1, 2, 3, 4}
    assert sub.disconnects == 1
