"""util.net: waiting for a port, in a thread and on the event loop."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from infergate.util.net import async_wait_for_port, free_port, wait_for_port


def test_wait_for_port_returns_once_a_listener_appears() -> None:
    port = free_port()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def listen_later() -> None:
        server.bind(("127.0.0.1", port))
        server.listen()

    timer = threading.Timer(0.2, listen_later)
    timer.start()
    try:
        wait_for_port("127.0.0.1", port, timeout=10)
    finally:
        timer.join()
        server.close()


def test_wait_for_port_names_the_port_and_the_last_error_on_timeout() -> None:
    port = free_port()
    with pytest.raises(TimeoutError, match=rf"127\.0\.0\.1:{port} did not accept connections within 0\.2s \(.+\)"):
        wait_for_port("127.0.0.1", port, timeout=0.2)


async def test_async_wait_for_port() -> None:
    port = free_port()
    with pytest.raises(TimeoutError, match=f"127.0.0.1:{port} did not accept connections within 0.2s"):
        await async_wait_for_port("127.0.0.1", port, timeout=0.2)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    async with server:
        await async_wait_for_port("127.0.0.1", port, timeout=5)
