"""Loopback networking helpers: free ports, per-test address blocks, waiting for a port."""

from __future__ import annotations

import asyncio
import random
import socket
import time


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (bind to port 0 and release)."""
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
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            last = exc
            time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not accept connections within {timeout}s ({last})")


async def async_wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
            writer.close()
            return
        except (TimeoutError, OSError) as exc:
            last = exc if isinstance(exc, OSError) else None
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not accept connections within {timeout}s ({last})")
