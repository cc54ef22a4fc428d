"""Loopback networking helpers: free ports, per-test address blocks, waiting for a port."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections import deque
from collections.abc import Mapping

from infergate.util.wait import WaitTimeout, async_wait_until, wait_until


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


PORT_RANGE_ENV = "INFERGATE_PORT_RANGE"  # "LOW-HIGH": where free_port picks (default: below the ephemeral range)
RECENT_PORTS = 256  # how many ports free_port handed out that it does not hand out again while still free


class PortRangeError(ValueError):
    """INFERGATE_PORT_RANGE is not "LOW-HIGH" with 1024 <= LOW < HIGH <= 65535."""


def port_range(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """The ports ``free_port`` picks from: ``INFERGATE_PORT_RANGE`` ("LOW-HIGH", both included) when set
    (the ports a firewall opens, or a share of the range that no other process picks from: each test
    worker gets its own), else from 10000 up to the kernel's ephemeral range."""
    value = (os.environ if environ is None else environ).get(PORT_RANGE_ENV, "").strip()
    if not value:
        return 10000, min(_ephemeral_range()[0] - 1, 65535)
    low_text, sep, high_text = value.partition("-")
    try:
        low, high = int(low_text), int(high_text)
    except ValueError:
        low = high = -1
    if not sep or not 1024 <= low < high <= 65535:
        raise PortRangeError(f"{PORT_RANGE_ENV}={value!r}: want LOW-HIGH with 1024 <= LOW < HIGH <= 65535")
    return low, high


def port_range_share(index: int, count: int, environ: Mapping[str, str] | None = None) -> str:
    """Share ``index`` of ``count`` disjoint shares of ``port_range()``, as an INFERGATE_PORT_RANGE value
    (each of ``count`` processes that start servers at once picks from its own)."""
    if not 0 <= index < count:
        raise ValueError(f"share {index} of {count}")
    low, high = port_range(environ)
    size = (high - low + 1) // count
    if size < 1:
        raise PortRangeError(f"{low}-{high} has fewer than {count} ports")
    return f"{low + index * size}-{low + (index + 1) * size - 1}"


# the ports this process handed out last: a server that has not bound its port yet leaves it free,
# and a second free_port call (three ports for one process) must not return it again
_recent: deque[int] = deque(maxlen=RECENT_PORTS)


def free_port(host: str = "127.0.0.1", *, rng: random.Random | None = None) -> int:
    """A TCP port that is free on ``host`` right now, for a server to listen on.

    It is taken from ``port_range()``, below the kernel's ephemeral range by default: a port handed
    out by ``bind(0)`` comes from that range, where every outgoing connection also takes its source
    port, so between choosing it and the server binding it a client connection may grab it (seen
    with Envoy listeners while other tests ran). It is not one of the last ``RECENT_PORTS`` this
    process handed out. Falls back to ``bind(0)`` if no such port is free.
    """
    rng = rng or random.Random()
    low, high = port_range()
    for _ in range(100) if high > low else ():
        port = rng.randint(low, high)
        if port not in _recent and port_is_free(host, port):
            _recent.append(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def random_loopback_block(count: int, port: int, *, rng: random.Random | None = None,
                          attempts: int = 50) -> list[str]:
    """``count`` consecutive loopback addresses 127.A.B.1.. on which ``port`` is free.

    Lets concurrent tests give each simulated pod its own address on the same port, the
    way pods have their own IPs, without colliding with each other.
    """
    if not 1 <= count <= 250:
        raise ValueError("count must be between 1 and 250")
    rng = rng or random.Random()
    for _ in range(attempts):
        a, b = rng.randint(20, 250), rng.randint(0, 255)
        addresses = [f"127.{a}.{b}.{i}" for i in range(1, count + 1)]
        if all(port_is_free(address, port) for address in addresses):
            return addresses
    raise RuntimeError(f"no free block of {count} loopback addresses for port {port}")


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until a TCP connect to host:port succeeds, or raise TimeoutError."""
    last: OSError | None = None

    def accepts() -> bool:
        nonlocal last
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError as exc:
            last = exc
            return False

    try:
        wait_until(accepts, timeout)
    except WaitTimeout:
        raise TimeoutError(f"{host}:{port} did not accept connections within {timeout}s ({last})") from None


async def async_wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """The event-loop form of wait_for_port."""
    last: OSError | None = None

    async def accepts() -> bool:
        nonlocal last
        error = await async_connect_error(host, port)
        last = None if isinstance(error, TimeoutError) else error
        return error is None

    try:
        await async_wait_until(accepts, timeout)
    except WaitTimeout:
        raise TimeoutError(f"{host}:{port} did not accept connections within {timeout}s ({last})") from None


async def async_connect_error(host: str, port: int, timeout: float = 0.5) -> OSError | None:
    """None when a TCP connect to host:port succeeds within ``timeout``, else the error (TimeoutError)."""
    try:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancel that comes as the
        # connect completes, and the polling loop calling this then outlived its cancel
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except OSError as exc:  # TimeoutError included
        return exc
    writer.close()
    return None
