"""Bounded polling: one way to wait for a condition, in threads and on an event loop.

Every loop in infergate that waits for something is bounded in time; these helpers make the
bound and the message on expiry the same everywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """A condition did not hold within its deadline."""


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    *,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call ``condition`` until it returns a truthy value and return that value.

    Raises WaitTimeout naming ``what`` after ``timeout`` seconds. Exceptions from ``condition``
    propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(min(interval, remaining))


@overload
async def async_wait_until(
    condition: Callable[[], Awaitable[T | None]],
    timeout: float,
    *,
    interval: float = ...,
    what: str = ...,
) -> T: ...


@overload
async def async_wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    *,
    interval: float = ...,
    what: str = ...,
) -> T: ...


async def async_wait_until(
    condition: Callable[[], T | Awaitable[T | None] | None],
    timeout: float,
    *,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """The event-loop form of wait_until: ``condition`` may be sync or async; sleeps with asyncio."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(min(interval, remaining))
