"""Stopping an API server that runs on its own thread leaves no task of its loop pending.

A client that connected but never finished its TLS handshake leaves the loop's accept task
(``_accept_connection2``) waiting. Closing the loop with it pending made Python print "Task was
destroyed but it is pending!" at garbage collection, in every test module that used the server.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from pathlib import Path

import pytest

from infergate.apiserver.embedded import EmbeddedAPIServer
from infergate.util.wait import wait_until


def test_stop_cancels_a_half_open_connection_and_leaves_nothing_pending(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    handle = EmbeddedAPIServer.run_in_thread(tmp_path)
    loop = handle._loop
    host, port = handle.url.removeprefix("https://").rsplit(":", 1)
    # a client that connects and sends nothing: the server waits for its TLS ClientHello
    with socket.create_connection((host, int(port)), timeout=5) as half_open:
        wait_until(lambda: any("accept_connection" in repr(t) for t in asyncio.all_tasks(loop)),
                   timeout=5, interval=0.01, what="the server to accept the connection")
        caplog.set_level(logging.ERROR, logger="asyncio")
        handle.stop()
        assert loop.is_closed()
        assert not asyncio.all_tasks(loop), asyncio.all_tasks(loop)
        half_open.settimeout(5)
        assert half_open.recv(1) == b""  # the server closed it
    gc.collect()
    assert "was destroyed but it is pending" not in caplog.text
