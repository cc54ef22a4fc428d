"""The keep-alive HTTP/1.1 scrape client and the scrape loop's jitter and back-off."""

from __future__ import annotations

import asyncio
import gzip
import random
from collections.abc import AsyncIterator, Callable

import pytest

from infergate.epp.datastore import Datastore
from infergate.epp.metrics_scraper import MetricsScraper, MetricsStore
from infergate.epp.scrape_client import HttpError, KeepAliveGet

Responder = Callable[[int], bytes]  # request number -> raw response bytes


class _Server(asyncio.Protocol):
    def __init__(self, responder: Responder, counter: list[int], close_after: bool) -> None:
        self.responder = responder
        self.counter = counter
        self.close_after = close_after
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self.counter[0] += 1
            self.transport.write(self.responder(self.counter[0]))  # type: ignore[attr-defined]
            if self.close_after:
                self.transport.close()


async def _serve(responder: Responder, *, close_after: bool = False) -> tuple[asyncio.Server, int, list[int]]:
    counter = [0]
    server = await asyncio.get_running_loop().create_server(
        lambda: _Server(responder, counter, close_after), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], counter


@pytest.fixture
async def served() -> AsyncIterator[Callable[..., object]]:
    servers: list[asyncio.Server] = []

    async def start(responder: Responder, **kwargs: bool) -> tuple[int, list[int]]:
        server, port, counter = await _serve(responder, **kwargs)
        servers.append(server)
        return port, counter

    yield start
    for server in servers:
        server.close()


def _plain(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body


async def test_content_length_responses_reuse_one_connection(served) -> None:  # type: ignore[no-untyped-def]
    port, counter = await served(lambda n: _plain(f"page {n}".encode()))
    client = KeepAliveGet("127.0.0.1", port, "/metrics")
    assert await client.get(2.0) == (200, b"page 1")
    assert await client.get(2.0) == (200, b"page 2")
    assert client.connects == 1 and counter[0] == 2
    client.close()


async def test_chunked_and_gzip_bodies(served) -> None:  # type: ignore[no-untyped-def]
    chunked = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n")
    port, _ = await served(lambda n: chunked if n == 1 else _plain(gzip.compress(b"zipped"), b"content-encoding: gzip\r\n"))
    client = KeepAliveGet("127.0.0.1", port, "/metrics")
    assert await client.get(2.0) == (200, b"hello, world")
    assert await client.get(2.0) == (200, b"zipped")
    assert client.connects == 1
    client.close()


async def test_connection_close_and_body_framed_by_the_end(served) -> None:  # type: ignore[no-untyped-def]
    port, _ = await served(lambda n: b"HTTP/1.0 503 Busy\r\n\r\nno body length", close_after=True)
    client = KeepAliveGet("127.0.0.1", port, "/metrics")
    assert await client.get(2.0) == (503, b"no body length")
    assert await client.get(2.0) == (503, b"no body length")
    assert client.connects == 2
    client.close()


async def test_a_connection_closed_while_idle_is_retried_once(served) -> None:  # type: ignore[no-untyped-def]
    # the server answers with keep-alive, then closes the idle connection
    port, _ = await served(lambda n: _plain(b"ok"), close_after=True)
    client = KeepAliveGet("127.0.0.1", port, "/metrics")
    assert await client.get(2.0) == (200, b"ok")
    await asyncio.sleep(0.05)
    assert await client.get(2.0) == (200, b"ok")
    assert client.connects == 2
    client.close()


async def test_garbage_and_silence_fail(served) -> None:  # type: ignore[no-untyped-def]
    port, _ = await served(lambda n: b"SSH-2.0-OpenSSH\r\n\r\n")
    client = KeepAliveGet("127.0.0.1", port, "/metrics")
    with pytest.raises(HttpError):
        await client.get(2.0)
    silent, _ = await served(lambda n: b"")
    client = KeepAliveGet("127.0.0.1", silent, "/metrics")
    with pytest.raises(TimeoutError):
        await client.get(0.2)
    client.close()


def test_scrape_delays_are_jittered_and_back_off_past_the_failure_threshold() -> None:
    scraper = MetricsScraper(Datastore(), MetricsStore(failure_threshold=2), refresh_interval=0.05,
                             max_backoff=1.0, rng=random.Random(1))
    healthy = [scraper._delay(0) for _ in range(200)]
    assert all(0.045 <= d <= 0.055 for d in healthy) and len(set(healthy)) > 100
    assert all(0.045 <= scraper._delay(1) <= 0.055 for _ in range(20))  # below the threshold: no back-off
    assert [round(scraper._delay(f), 3) for f in (2, 3, 4, 5, 6, 10)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


async def test_https_scrapes_go_through_aiohttp(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import ssl

    from aiohttp import web

    from infergate.bench.epp_cost_metrics_server import metrics_page
    from infergate.epp.datastore import PodInfo, PoolInfo
    from infergate.util.tls import ensure_certificate

    cert, key = ensure_certificate(tmp_path, "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async def page(request: web.Request) -> web.Response:
        return web.Response(body=metrics_page())

    app = web.Application()
    app.router.add_get("/metrics", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        datastore = Datastore()
        datastore.set_pool(PoolInfo("p", selector=None, target_ports=(port,)))
        datastore.replace_pods([PodInfo("pod", "127.0.0.1")])
        store = MetricsStore()
        async with MetricsScraper(datastore, store, scheme="https", refresh_interval=0.02) as scraper:
            endpoint = datastore.endpoints()[0]
            assert await scraper.scrape_once(endpoint)
            metrics = store.raw(endpoint.hostport)
            assert metrics is not None and metrics.waiting_queue == 0 and metrics.missing == ()
    finally:
        await runner.cleanup()
