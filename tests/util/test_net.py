"""util.net: waiting for a port, in a thread and on the event loop."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
from collections import deque

import pytest

from infergate.util import net
from infergate.util.net import async_wait_for_port, free_port, wait_for_port

from ..support.ports import share_for_worker


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


def test_the_port_range_comes_from_the_environment_or_below_the_ephemeral_range() -> None:
    assert net.port_range({net.PORT_RANGE_ENV: "20000-20010"}) == (20000, 20010)
    low, high = net.port_range({})
    assert low == 10000 and high < net._ephemeral_range()[0]
    for bad in ("20000", "x-y", "20010-20000", "80-9000", "60000-70000"):
        with pytest.raises(net.PortRangeError, match=re.escape(f"INFERGATE_PORT_RANGE={bad!r}: want LOW-HIGH")):
            net.port_range({net.PORT_RANGE_ENV: bad})


def test_shares_of_the_range_are_disjoint_and_within_it() -> None:
    environ = {net.PORT_RANGE_ENV: "20000-20999"}
    shares = [net.port_range({net.PORT_RANGE_ENV: net.port_range_share(i, 3, environ)}) for i in range(3)]
    assert shares == [(20000, 20332), (20333, 20665), (20666, 20998)]
    with pytest.raises(ValueError, match="share 3 of 3"):
        net.port_range_share(3, 3, environ)
    with pytest.raises(net.PortRangeError, match="fewer than 5 ports"):
        net.port_range_share(0, 5, {net.PORT_RANGE_ENV: "20000-20003"})


def test_free_port_picks_in_the_range_and_never_the_same_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight servers' ports picked before any binds: all different (each is still free when the next
    is picked). The eight ports are the first of this process's own share, so that another test
    worker's servers never hold one of them."""
    low = net.port_range()[0]
    monkeypatch.setenv(net.PORT_RANGE_ENV, f"{low}-{low + 7}")
    monkeypatch.setattr(net, "_recent", deque(maxlen=net.RECENT_PORTS))
    ports = [free_port() for _ in range(8)]
    assert sorted(ports) == list(range(low, low + 8))


def test_each_test_worker_gets_its_own_share() -> None:
    """tests/conftest.py gives each xdist worker (and the processes its tests start) a share of the range."""
    environ = {net.PORT_RANGE_ENV: "20000-20999"}
    share_for_worker(None, environ)  # no workers: the whole range
    assert environ == {net.PORT_RANGE_ENV: "20000-20999"}
    shares = []
    for worker in ("gw0", "gw1"):
        mine = {net.PORT_RANGE_ENV: "20000-20999"}
        share_for_worker({"workerid": worker, "workercount": 2}, mine)
        shares.append(net.port_range(mine))
    assert shares == [(20000, 20499), (20500, 20999)]
    if os.environ.get("PYTEST_XDIST_WORKER") is not None:  # this very run: the conftest gave this worker its share
        count = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
        low, high = net.port_range()
        assert (high - low + 1) * count <= 65535 - 1024
        assert low <= free_port() <= high
