"""One TCP listener that forwards each connection to a backend, round robin (kube-proxy's old
userspace mode, for one Service address and port).

    forwarder = TcpForwarder("127.96.0.10", 9002, ForwardLimits())
    forwarder.set_backends([("127.3.0.7", 9002), ("127.3.0.8", 9002)])
    await forwarder.start()
    ...
    await forwarder.stop()   # stops listening and closes every forwarded connection

Bounded: at most ``max_connections`` forwarded connections at a time (more are accepted and
closed at once, as a full backlog would refuse them), a connect timeout per backend attempt
(a backend that refuses or times out is skipped for the next one, each backend tried at most
once per connection), an idle timeout (no byte in either direction). Nothing runs while no
connection is open: the listener is the event loop's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

Backend = tuple[str, int]
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ForwardLimits:
    max_connections: int = 1024  # forwarded connections open at once, per listener
    connect_timeout_s: float = 5.0  # per backend attempt
    idle_timeout_s: float = 900.0  # no byte either way for this long: both sides closed

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError(f"max_connections: must be >= 1, got {self.max_connections}")
        if self.connect_timeout_s <= 0 or self.idle_timeout_s <= 0:
            raise ValueError("connect_timeout_s and idle_timeout_s must be > 0")


@dataclass
class ForwardStats:
    accepted: int = 0
    forwarded: int = 0
    rejected: int = 0  # over max_connections
    no_backend: int = 0  # no backend, or none answered
    connect_failures: int = 0  # backend attempts that failed (another one was tried next)


class _Activity:
    """When a byte last went through a connection, in either direction."""

    def __init__(self) -> None:
        self.last = time.monotonic()


class TcpForwarder:
    """A listener on ``host:port`` forwarding to the current backends (changed at any time)."""

    def __init__(self, host: str, port: int, limits: ForwardLimits | None = None, name: str = "") -> None:
        self.host, self.port = host, port
        self.limits = limits or ForwardLimits()
        self.name = name or f"{host}:{port}"
        self.stats = ForwardStats()
        self._backends: tuple[Backend, ...] = ()
        self._next = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def backends(self) -> tuple[Backend, ...]:
        return self._backends

    @property
    def active(self) -> int:
        """Connections being forwarded now."""
        return len(self._connections)

    @property
    def listening(self) -> bool:
        return self._server is not None

    def set_backends(self, backends: Sequence[Backend]) -> None:
        """New backends for new connections; connections already forwarded keep theirs."""
        fresh = tuple(backends)
        if fresh != self._backends:
            self._backends = fresh
            self._next = 0

    async def start(self) -> None:
        """Listen (raises OSError when the address cannot be bound)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True,
                                                      backlog=min(self.limits.max_connections, 1024))

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5.0)

    def _candidates(self) -> list[Backend]:
        """Every backend once, starting at the round-robin position (which then moves on by one)."""
        backends = self._backends
        if not backends:
            return []
        start = self._next % len(backends)
        self._next = start + 1
        return [*backends[start:], *backends[:start]]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        if len(self._connections) >= self.limits.max_connections:
            self.stats.rejected += 1
            log.warning("%s: %d connections open (the limit): closing a new one", self.name, len(self._connections))
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._forward(reader, writer)
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for host, port in self._candidates():
            try:  # asyncio.timeout, not wait_for (see _pipe)
                async with asyncio.timeout(self.limits.connect_timeout_s):
                    return await asyncio.open_connection(host, port)
            except (OSError, TimeoutError) as exc:
                self.stats.connect_failures += 1
                log.info("%s: backend %s:%d: %s", self.name, host, port, exc or type(exc).__name__)
        return None

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect()
        if upstream is None:
            self.stats.no_backend += 1
            return
        self.stats.forwarded += 1
        up_reader, up_writer = upstream
        activity = _Activity()
        try:
            await asyncio.gather(self._pipe(reader, up_writer, activity), self._pipe(up_reader, writer, activity))
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(up_writer.wait_closed(), 1.0)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, activity: _Activity) -> None:
        """Copy until EOF (then half-close the sink), an error, or the connection was idle too long."""
        idle = self.limits.idle_timeout_s
        try:
            while True:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancel that comes as
                # the read completes, and the copy then outlived stop()'s cancel (stop() hung)
                try:
                    async with asyncio.timeout(idle):
                        data = await source.read(_CHUNK)
                except TimeoutError:
                    if time.monotonic() - activity.last >= idle:
                        break  # idle both ways
                    continue  # the other direction is busy (a streamed response)
                if not data:
                    if sink.can_write_eof():
                        with contextlib.suppress(OSError):
                            sink.write_eof()
                    return
                activity.last = time.monotonic()
                sink.write(data)
                await sink.drain()
        except (OSError, ConnectionError):
            pass
        # an error or idleness ends both directions
        sink.close()
        source.feed_eof()
