"""Publisher and subscriber over real ZMQ sockets on 127.0.0.1 (bounded waits throughout)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from infergate.kvevents import (
    BlockRemoved,
    BlockStored,
    EndpointBlockIndex,
    KvEventPublisher,
    KvEventSubscriber,
)
from infergate.util.wait import async_wait_until


def stored(*hashes: int) -> BlockStored:
    return BlockStored(tuple(hashes), None, (), 16)


@contextlib.asynccontextmanager
async def running(sub: KvEventSubscriber) -> AsyncIterator[KvEventSubscriber]:
    sub.start()
    try:
        yield sub
    finally:
        await sub.stop()


async def publish_until(pub: KvEventPublisher, done: object, *, first: int = 100, timeout: float = 10.0) -> int:
    """Publish a fresh block every 20 ms until ``done()`` holds (a SUB joins asynchronously)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    h = first
    while not done():  # type: ignore[operator]
        if loop.time() > deadline:
            raise TimeoutError("subscriber did not catch up")
        pub.publish([stored(h)])
        h += 1
        await asyncio.sleep(0.02)
    return h


@pytest.mark.parametrize("encoding", ["map", "array"])
async def test_late_subscriber_recovers_everything_by_replay(encoding: str) -> None:
    pub = KvEventPublisher("tcp://127.0.0.1:*", replay_endpoint="tcp://127.0.0.1:*",
                           topic="kv@127.0.0.1:8000@m", encoding=encoding)  # type: ignore[arg-type]
    await pub.start()
    try:
        pub.publish([stored(1, 2, 3)])  # nobody listens yet: only the replay buffer has these
        pub.publish([BlockRemoved((2,), "GPU")])
        index = EndpointBlockIndex()
        assert pub.bound_endpoint is not None
        sub = KvEventSubscriber(pub.bound_endpoint, index, replay_endpoint=pub.bound_replay_endpoint)
        async with running(sub):
            last = await publish_until(pub, lambda: index.stats.batches >= 3)
            await async_wait_until(lambda: len(index.blocks) >= 2 + (last - 100), 5.0)
        assert index.reliable, index.reason
        assert {1, 3} <= index.blocks and 2 not in index.blocks
        assert index.blocks == {1, 3, *range(100, last)}
        assert index.stats.replays >= 1 and pub.replays_served >= 1
    finally:
        await pub.close()


async def test_late_subscriber_without_replay_is_unreliable() -> None:
    pub = KvEventPublisher("tcp://127.0.0.1:*", topic="kv@127.0.0.1:8000@m")
    await pub.start()
    try:
        pub.publish([stored(1)])
        index = EndpointBlockIndex()
        assert pub.bound_endpoint is not None
        async with running(KvEventSubscriber(pub.bound_endpoint, index)):
            await publish_until(pub, lambda: index.stats.batches >= 1)
        assert not index.reliable and "no replay endpoint" in index.reason
        assert 1 not in index.blocks
    finally:
        await pub.close()


async def test_topic_filter_and_publisher_restart() -> None:
    pub = KvEventPublisher("tcp://127.0.0.1:*", topic="kv@127.0.0.1:8000@m")
    await pub.start()
    assert pub.bound_endpoint is not None
    endpoint = pub.bound_endpoint
    index = EndpointBlockIndex()
    other = EndpointBlockIndex()
    sub = KvEventSubscriber(endpoint, index, reconnect_ivl_s=0.05, reconnect_ivl_max_s=0.2)
    filtered = KvEventSubscriber(endpoint, other, topic_filter="kv@10.9.9.9")
    try:
        async with running(sub), running(filtered):
            await async_wait_until(lambda: sub.connected and filtered.connected, 5.0)
            await asyncio.sleep(0.1)  # let the subscription reach the publisher
            # before the first event arrives the index is not trusted (it may have missed some)
            pub.publish([stored(1, 2)])  # seq 0: a fresh engine
            await async_wait_until(lambda: index.stats.batches >= 1, 5.0)
            assert index.reliable and index.blocks == {1, 2}
            await pub.close()  # the engine dies...
            await async_wait_until(lambda: not index.reliable, 5.0)
            assert "disconnected" in index.reason
            pub = KvEventPublisher(endpoint, topic="kv@127.0.0.1:8000@m", bind=True)  # ...and comes back cold
            await pub.start()
            await async_wait_until(lambda: sub.connected, 5.0)
            await asyncio.sleep(0.2)  # let the subscription reach the new publisher, as before the first batch
            await publish_until(pub, lambda: index.reliable, first=50)
            assert 1 not in index.blocks and 50 in index.blocks
        assert other.stats.batches == 0  # its topic filter matched nothing
    finally:
        await pub.close()


async def test_subscriber_stops_cleanly_while_nothing_listens() -> None:
    index = EndpointBlockIndex()
    sub = KvEventSubscriber("tcp://127.0.0.1:9", index, reconnect_ivl_s=0.01, reconnect_ivl_max_s=0.05)
    sub.start()
    await asyncio.sleep(0.1)
    assert sub.running and not sub.connected and not index.reliable
    await asyncio.wait_for(sub.stop(), 2.0)
    assert not sub.running


async def test_a_lost_live_batch_is_replayed_and_the_index_stays_reliable() -> None:
    from infergate.kvevents import EventBatch, encode_batch

    pub = KvEventPublisher("tcp://127.0.0.1:*", replay_endpoint="tcp://127.0.0.1:*", topic="kv@t")
    await pub.start()
    try:
        index = EndpointBlockIndex()
        assert pub.bound_endpoint is not None
        sub = KvEventSubscriber(pub.bound_endpoint, index, replay_endpoint=pub.bound_replay_endpoint)
        async with running(sub):
            await async_wait_until(lambda: sub.connected, 5.0)
            await asyncio.sleep(0.1)
            pub.publish([stored(1)])  # seq 0
            await async_wait_until(lambda: index.stats.batches == 1, 5.0)
            # seq 1 is buffered for replay but never reaches the subscriber (as at the high-water mark)
            pub._buffer.append((1, encode_batch(EventBatch(0.0, (stored(2), BlockRemoved((1,), "GPU"))))))
            pub.next_seq = 2
            pub.publish([stored(3)])  # seq 2 shows the gap
            await async_wait_until(lambda: index.stats.batches == 3, 5.0)
        assert index.reliable, index.reason
        assert index.blocks == {2, 3} and index.stats.gaps == 1 and index.stats.replays == 1
    finally:
        await pub.close()


async def test_an_endpoint_that_cannot_be_bound_is_an_os_error_naming_it() -> None:
    """A taken port or an address not of this machine: an ``OSError`` the sim reports in one line
    ("cannot listen: [Errno 98] cannot bind tcp://...: Address already in use"), not a ZMQError traceback."""
    import errno
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        endpoint = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        pub = KvEventPublisher(endpoint, bind=True)  # as the sim does (vLLM's rule would connect to it)
        try:
            with pytest.raises(OSError) as raised:
                await pub.start()
        finally:
            await pub.close()
    assert raised.value.errno == errno.EADDRINUSE
    assert str(raised.value) == f"[Errno {errno.EADDRINUSE}] cannot bind {endpoint}: Address already in use"
    replay = KvEventPublisher("tcp://127.0.0.1:0", replay_endpoint="tcp://192.0.2.1:5558")  # TEST-NET: not ours
    try:
        with pytest.raises(OSError) as raised:
            await replay.start()
    finally:
        await replay.close()
    assert raised.value.errno == errno.EADDRNOTAVAIL and "cannot bind tcp://192.0.2.1:5558" in str(raised.value)
