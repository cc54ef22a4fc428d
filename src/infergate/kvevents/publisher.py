"""A vLLM-compatible KV-event publisher: ZMQ PUB plus an optional ROUTER serving replays.

Like vLLM's ``ZmqEventPublisher``: every batch goes out as ``(topic, seq, payload)`` with
``seq`` counting from 0 at start; the last ``buffer_steps`` payloads are kept so that a
subscriber that saw a gap can ask the replay socket for everything from a sequence number:
it sends ``(b"", seq)`` from a DEALER (a REQ envelope), and receives ``(b"", seq, payload)``
for each buffered batch with a number ``>= seq``, then ``(b"", -1, b"")``.

The endpoint is bound when it contains ``*`` or ``::`` or is ``ipc://``/``inproc://`` (vLLM's
heuristic), else connected; ``bind=True`` binds a specific address (the simulator binds its
own). ``publish`` never blocks: at the high-water mark ZMQ drops the
message for slow subscribers (they see a gap), and ``dropped`` counts sends that failed here.
Runs on the caller's asyncio loop; one ZMQ context per publisher, closed with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence

import zmq
import zmq.asyncio

from infergate.kvevents.codec import END_OF_REPLAY, Encoding, encode_batch, encode_seq
from infergate.kvevents.events import EventBatch, KvEvent

log = logging.getLogger(__name__)

DEFAULT_BUFFER_STEPS = 10_000
DEFAULT_HWM = 100_000


def binds(endpoint: str) -> bool:
    """vLLM's rule: bind wildcard and local transports, connect anything else."""
    return "*" in endpoint or "::" in endpoint or endpoint.startswith(("ipc://", "inproc://"))


class KvEventPublisher:
    def __init__(self, endpoint: str, *, replay_endpoint: str | None = None, topic: str = "",
                 encoding: Encoding = "map", buffer_steps: int = DEFAULT_BUFFER_STEPS, hwm: int = DEFAULT_HWM,
                 data_parallel_rank: int | None = None, bind: bool | None = None) -> None:
        if buffer_steps < 1:
            raise ValueError("buffer_steps: must be >= 1")
        self.endpoint = endpoint
        self.bind = binds(endpoint) if bind is None else bind  # None: vLLM's heuristic
        self.replay_endpoint = replay_endpoint
        self.topic = topic
        self.encoding: Encoding = encoding
        self.hwm = hwm
        self.data_parallel_rank = data_parallel_rank
        self.next_seq = 0
        self.dropped = 0
        self.replays_served = 0
        self._buffer: deque[tuple[int, bytes]] = deque(maxlen=buffer_steps)
        self._ctx: zmq.asyncio.Context | None = None
        self._pub: zmq.Socket[bytes] | None = None  # synchronous: sends never wait
        self._router: zmq.asyncio.Socket | None = None
        self._replay_task: asyncio.Task[None] | None = None
        self.bound_endpoint: str | None = None  # the PUB socket's actual address (wildcard port resolved)
        self.bound_replay_endpoint: str | None = None

    async def start(self) -> None:
        if self._ctx is not None:
            raise RuntimeError("publisher already started")
        ctx = self._ctx = zmq.asyncio.Context()
        try:
            pub: zmq.Socket[bytes] = zmq.Context.shadow(ctx.underlying).socket(zmq.PUB)
            self._pub = pub
            pub.setsockopt(zmq.SNDHWM, self.hwm)
            pub.setsockopt(zmq.LINGER, 0)
            if self.bind:
                _bind(pub, self.endpoint)
                self.bound_endpoint = pub.getsockopt(zmq.LAST_ENDPOINT).decode()  # type: ignore[union-attr]
            else:
                pub.connect(self.endpoint)
                self.bound_endpoint = self.endpoint
            if self.replay_endpoint:
                router = self._router = ctx.socket(zmq.ROUTER)
                router.setsockopt(zmq.LINGER, 0)
                _bind(router, self.replay_endpoint)
                self.bound_replay_endpoint = router.getsockopt(zmq.LAST_ENDPOINT).decode()  # type: ignore[union-attr]
                self._replay_task = asyncio.get_running_loop().create_task(self._serve_replays(),
                                                                           name="kv-events-replay")
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        task, self._replay_task = self._replay_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sock in (self._pub, self._router):
            if sock is not None:
                sock.close(linger=0)
        self._pub = self._router = None
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            ctx.term()

    @property
    def started(self) -> bool:
        return self._pub is not None

    def publish(self, events: Sequence[KvEvent], ts: float | None = None) -> int:
        """Send one batch now; returns its sequence number (buffered for replay even if dropped)."""
        pub = self._pub
        if pub is None:
            raise RuntimeError("publisher is not started")
        batch = EventBatch(time.time() if ts is None else ts, tuple(events), self.data_parallel_rank)
        payload = encode_batch(batch, self.encoding)
        seq = self.next_seq
        self.next_seq += 1
        self._buffer.append((seq, payload))
        try:
            pub.send_multipart((self.topic.encode(), encode_seq(seq), payload), flags=zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
        return seq

    async def _serve_replays(self) -> None:
        router = self._router
        assert router is not None
        while True:
            frames = await router.recv_multipart()
            if len(frames) != 3 or len(frames[2]) != 8:
                log.warning("kv events: ignoring a malformed replay request (%d frames)", len(frames))
                continue
            client, _, start = frames
            first = int.from_bytes(start, "big")
            for seq, payload in list(self._buffer):
                if seq >= first:
                    await router.send_multipart((client, b"", encode_seq(seq), payload))
            await router.send_multipart((client, b"", encode_seq(END_OF_REPLAY), b""))
            self.replays_served += 1


def _bind(sock: zmq.Socket[bytes] | zmq.asyncio.Socket, endpoint: str) -> None:
    """``sock.bind(endpoint)``; a failure is an ``OSError`` naming the endpoint (taken, not this machine's)."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        raise OSError(exc.errno, f"cannot bind {endpoint}: {zmq.strerror(exc.errno) if exc.errno else exc}") from exc
