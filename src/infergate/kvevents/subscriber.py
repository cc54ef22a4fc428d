"""An asyncio KV-event subscriber for one publisher, keeping an ``EndpointBlockIndex`` current.

The SUB socket connects to the publisher (ZMQ reconnects by itself with a bounded back-off,
``reconnect_ivl_s`` doubling up to ``reconnect_ivl_max_s``); a socket monitor reports
connects and disconnects. For each message:

- sequence 0: the publisher (re)started with an empty cache, so the index is reset and trusted;
- the next number: the batch is applied;
- a gap (or a lower number, i.e. a restarted publisher whose first batches were lost): with a
  replay endpoint the missing batches are fetched (DEALER, bounded by ``replay_timeout_s``) and
  applied in order; whatever cannot be filled makes the index unreliable until the next
  restart or ``AllBlocksCleared``;
- a malformed batch counts as a lost one (unreliable) and is logged once per burst.

A disconnect makes the index unreliable until the next message received after the reconnect
shows whether anything was missed (the next number restores the previous state); a batch read
between the disconnect and the reconnect was sent before the publisher went away, and is applied
without restoring trust (a restarted engine's cache is empty whatever that batch said). Errors
of the socket itself end the session: the subscriber backs off (bounded) and starts a new one. ``stop()`` cancels cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from infergate.kvevents.codec import (
    END_OF_REPLAY,
    KvEventDecodeError,
    decode_batch,
    decode_seq,
    encode_seq,
    split_message,
)
from infergate.kvevents.index import EndpointBlockIndex
from infergate.kvevents.sequence import SequenceTracker, Verdict

log = logging.getLogger(__name__)

DEFAULT_TOPIC_FILTER = "kv@"


class KvEventSubscriber:
    def __init__(self, endpoint: str, index: EndpointBlockIndex, *, replay_endpoint: str | None = None,
                 topic_filter: str = DEFAULT_TOPIC_FILTER, context: zmq.asyncio.Context | None = None,
                 replay_timeout_s: float = 1.0, reconnect_ivl_s: float = 0.1, reconnect_ivl_max_s: float = 5.0) -> None:
        self.endpoint = endpoint
        self.replay_endpoint = replay_endpoint
        self.index = index
        self.topic_filter = topic_filter
        self.replay_timeout_s = replay_timeout_s
        self.reconnect_ivl_s = reconnect_ivl_s
        self.reconnect_ivl_max_s = reconnect_ivl_max_s
        self.tracker = SequenceTracker()
        self.connected = False
        self.sessions = 0
        self._own_context = context is None
        self._ctx = context
        self._task: asyncio.Task[None] | None = None
        self._reliable_before_disconnect = False
        self.disconnects = 0  # publisher disconnects the socket monitor reported
        self._logged_decode_error = False

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("subscriber already started")
        if self._ctx is None:
            self._ctx = zmq.asyncio.Context()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"kv-events {self.endpoint}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._own_context and self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        delay = self.reconnect_ivl_s
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (zmq.ZMQError, OSError) as exc:
                log.warning("kv events %s: subscriber error (%s); retrying in %.1fs", self.endpoint, exc, delay)
            except Exception:  # a bug must not end the subscription for good
                log.exception("kv events %s: subscriber failed; retrying in %.1fs", self.endpoint, delay)
            self.connected = False
            self.index.mark_unreliable("subscriber restarting")
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_ivl_max_s)

    async def _session(self) -> None:
        assert self._ctx is not None
        sub = self._ctx.socket(zmq.SUB)
        monitor: zmq.asyncio.Socket | None = None
        try:
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.RECONNECT_IVL, max(1, int(self.reconnect_ivl_s * 1000)))
            sub.setsockopt(zmq.RECONNECT_IVL_MAX, max(1, int(self.reconnect_ivl_max_s * 1000)))
            sub.setsockopt(zmq.SUBSCRIBE, self.topic_filter.encode())
            monitor = sub.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
            sub.connect(self.endpoint)
            self.sessions += 1
            poller = zmq.asyncio.Poller()
            poller.register(sub, zmq.POLLIN)
            poller.register(monitor, zmq.POLLIN)
            while True:
                ready = dict(await poller.poll())
                if monitor in ready:
                    self._on_monitor(parse_monitor_message(await monitor.recv_multipart()))
                if sub in ready:
                    await self.handle(await sub.recv_multipart())
        finally:
            if monitor is not None:
                with contextlib.suppress(zmq.ZMQError):
                    sub.disable_monitor()
                monitor.close(linger=0)
            sub.close(linger=0)

    def _on_monitor(self, message: Mapping[str, Any]) -> None:
        event = message.get("event")
        if event == zmq.EVENT_CONNECTED:
            self.connected = True
            log.debug("kv events %s: connected", self.endpoint)
        elif event == zmq.EVENT_DISCONNECTED:
            self.disconnects += 1
            self.connected = False
            self._reliable_before_disconnect = self.index.reliable
            self.index.mark_unreliable("disconnected from the publisher")

    # ---- messages -----------------------------------------------------------------------
    async def handle(self, frames: list[bytes]) -> None:
        """Apply one published message (public so that tests can feed frames directly)."""
        index = self.index
        try:
            _, seq, payload = split_message(frames)
        except KvEventDecodeError as exc:
            index.stats.decode_errors += 1
            index.mark_unreliable(f"malformed message: {exc}")
            self._log_decode_error(exc)
            return
        check = self.tracker.check(seq)
        was_reliable = index.reliable or self._reliable_before_disconnect
        if self.connected:  # a batch read while disconnected was sent before: trust waits for the reconnect
            self._reliable_before_disconnect = False
        if check.verdict is Verdict.RESTART:
            index.reset("publisher started (sequence 0)")
        elif check.verdict is Verdict.GAP:
            index.stats.gaps += 1
            start = check.missing_from
            if start == 0:  # the cache was empty at the publisher's start: rebuild from there
                index.reset("replaying from sequence 0")
            index.mark_unreliable(f"replaying {start}..{seq - 1}")  # not used while incomplete
            filled = await self._replay(start, seq)
            if filled and (start == 0 or was_reliable):
                index.reliable = True
                index.reason = f"replayed {start}..{seq - 1}"
            else:
                how = "no replay endpoint" if not self.replay_endpoint else "replay incomplete"
                index.mark_unreliable(f"missed batches {start}..{seq - 1} ({how})")
        elif (was_reliable and self.connected and not index.reliable
              and index.reason == "disconnected from the publisher"):
            index.reliable = True  # reconnected and nothing was missed
            index.reason = "reconnected without loss"
        self._apply(seq, payload)
        self.tracker.applied(seq)

    def _apply(self, seq: int, payload: bytes) -> bool:
        index = self.index
        try:
            decoded = decode_batch(payload)
        except KvEventDecodeError as exc:
            index.stats.decode_errors += 1
            index.mark_unreliable(f"malformed batch {seq}: {exc}")
            self._log_decode_error(exc)
            return False
        self._logged_decode_error = False
        index.stats.unknown_events += decoded.unknown_events
        index.apply(decoded.batch)
        return True

    def _log_decode_error(self, exc: Exception) -> None:
        if not self._logged_decode_error:
            log.warning("kv events %s: %s", self.endpoint, exc)
            self._logged_decode_error = True

    async def _replay(self, start: int, end: int) -> bool:
        """Fetch and apply batches ``start .. end - 1``; True when all of them were applied."""
        if not self.replay_endpoint or start >= end:
            return start >= end
        assert self._ctx is not None
        self.index.stats.replays += 1
        dealer = self._ctx.socket(zmq.DEALER)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.replay_timeout_s
        wanted = start
        try:
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(self.replay_endpoint)
            await dealer.send_multipart((b"", encode_seq(start)))
            while wanted < end:
                remaining = deadline - loop.time()
                if remaining <= 0 or not await dealer.poll(int(remaining * 1000) + 1):
                    break
                frames = await dealer.recv_multipart()
                if len(frames) != 3:
                    break
                seq = decode_seq(frames[1])
                if seq == END_OF_REPLAY:
                    break
                if seq < wanted:
                    continue
                if seq > wanted or not self._apply(seq, frames[2]):
                    break  # the buffer no longer holds `wanted`, or it is unreadable
                wanted += 1
        except KvEventDecodeError:
            pass
        finally:
            dealer.close(linger=0)
        return wanted >= end
