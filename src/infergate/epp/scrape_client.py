"""A minimal keep-alive HTTP/1.1 GET client for scraping ``/metrics`` over plain HTTP.

The EPP scrapes every endpoint every 50 ms: with aiohttp one scrape cost about 0.3 ms of
EPP CPU (request/response objects, header multidicts, stream readers), which made a
256-endpoint pool cost more than a core before any request. This client keeps one TCP
connection per endpoint (an ``asyncio.Protocol``), sends a fixed request, and frames the
response by ``Content-Length`` or chunked transfer encoding (or the connection's end); a
gzip or deflate body (sent only if a server ignores the missing ``Accept-Encoding``) is
decompressed. HTTPS scrapes keep using aiohttp (see metrics_scraper.py).

A reused connection that the server closed while idle fails the first write/read; the
request is then retried once on a new connection, as HTTP clients do.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any


class HttpError(OSError):
    """The server did not answer with a parsable HTTP/1.x response."""


class _Response(asyncio.Protocol):
    """One connection; at most one request in flight (the scrape loop is sequential)."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.closed = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._head: tuple[int, dict[bytes, bytes]] | None = None
        self._body_start = 0
        self.keep_alive = True

    # ---- asyncio.Protocol ----
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is not None and not self._waiter.done():
            try:
                self._parse(eof=False)
            except HttpError as exc:
                self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            try:
                self._parse(eof=True)
            except HttpError as error:
                self._fail(error)
            if not self._waiter.done():
                self._fail(ConnectionResetError("connection closed before the response ended"))

    # ---- requests ----
    def request(self, payload: bytes) -> asyncio.Future[tuple[int, bytes]]:
        self._buffer.clear()
        self._head = None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        assert self._waiter is not None
        if not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def _finish(self, status: int, body: bytes, headers: dict[bytes, bytes]) -> None:
        assert self._waiter is not None
        encoding = headers.get(b"content-encoding", b"").strip().lower()
        if encoding in (b"gzip", b"deflate"):
            try:
                body = zlib.decompress(body, 47)  # 32 + 15: gzip or zlib header, detected
            except zlib.error as exc:
                raise HttpError(f"bad {encoding.decode()} body: {exc}") from None
        elif encoding not in (b"", b"identity"):
            raise HttpError(f"unsupported content-encoding {encoding.decode(errors='replace')}")
        if not self.keep_alive:
            self.close()
        self._waiter.set_result((status, body))

    def _parse(self, *, eof: bool) -> None:
        buffer = self._buffer
        if self._head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > 65536:
                    raise HttpError("response head over 64 KiB")
                return
            lines = bytes(buffer[:end]).split(b"\r\n")
            status_line = lines[0].split(None, 2)
            if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
                raise HttpError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
            try:
                status = int(status_line[1])
            except ValueError:
                raise HttpError(f"bad status line {lines[0][:80]!r}") from None
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            connection = headers.get(b"connection", b"").lower()
            self.keep_alive = status_line[0] != b"HTTP/1.0" and connection != b"close"
            self._head = (status, headers)
            self._body_start = end + 4
        status, headers = self._head
        start = self._body_start
        length = headers.get(b"content-length")
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            body = _dechunk(buffer, start)
            if body is not None:
                self._finish(status, body, headers)
            elif eof:
                raise HttpError("connection closed inside a chunked body")
        elif length is not None:
            try:
                size = int(length)
            except ValueError:
                raise HttpError(f"bad content-length {length[:40]!r}") from None
            if len(buffer) - start >= size:
                self._finish(status, bytes(buffer[start : start + size]), headers)
        elif eof:  # framed by the connection's end
            self.keep_alive = False
            self._finish(status, bytes(buffer[start:]), headers)
        else:
            self.keep_alive = False


def _dechunk(buffer: bytearray, position: int) -> bytes | None:
    """The de-chunked body, or None while incomplete."""
    parts: list[bytes] = []
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        try:
            size = int(bytes(buffer[position:line_end]).split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpError("bad chunk size") from None
        position = line_end + 2
        if size == 0:
            # trailers (if any) end with an empty line
            if buffer.startswith(b"\r\n", position):
                return b"".join(parts)
            return None if buffer.find(b"\r\n\r\n", position) < 0 else b"".join(parts)
        if len(buffer) < position + size + 2:
            return None
        parts.append(bytes(buffer[position : position + size]))
        position += size + 2


class KeepAliveGet:
    """GET one URL again and again over one kept-alive connection."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host = host
        self.port = port
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._payload = (f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: infergate-epp\r\n"
                         "Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\n\r\n").encode()
        self._connection: _Response | None = None
        self.connects = 0  # connections opened (tests, benchmarks)

    async def get(self, timeout: float) -> tuple[int, bytes]:
        """(status, body); raises OSError (including TimeoutError) on failure."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        connection = self._connection
        if connection is not None and not connection.closed:
            try:
                return await self._exchange(connection, deadline)
            except ConnectionError:
                pass  # closed by the server while idle: once more on a new connection
        # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancel that comes as the
        # connection completes, and the scrape loop then outlived the scraper's stop
        async with asyncio.timeout(max(0.0, deadline - loop.time())):
            transport_protocol = await loop.create_connection(_Response, self.host, self.port)
        self.connects += 1
        self._connection = transport_protocol[1]
        return await self._exchange(self._connection, deadline)

    async def _exchange(self, connection: _Response, deadline: float) -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        waiter = connection.request(self._payload)
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            return await waiter
        except BaseException:
            connection.close()
            raise
        finally:
            timer.cancel()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _expire(waiter: asyncio.Future[tuple[int, bytes]]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("scrape timed out"))
