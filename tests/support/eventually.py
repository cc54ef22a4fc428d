"""Waiting for a state that a test reaches eventually, when checking too early raises.

A check may assert, miss a key or meet a refused connection until the system under test has
caught up; ``eventually`` retries those (``util.wait`` alone lets exceptions through) and on
expiry fails with the last one, which says what was still wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from infergate.util.wait import WaitTimeout, async_wait_until, wait_until

RETRIED: tuple[type[BaseException], ...] = (AssertionError, KeyError, IndexError, ValueError, httpx.HTTPError)


def _failure(what: str, timeout: float, last: BaseException | None) -> AssertionError:
    return AssertionError(f"{what}: not reached within {timeout}s ({last!r})")


def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition", *,
               interval: float = 0.25) -> Any:
    """``check()`` until it returns something truthy without raising one of RETRIED; that value."""
    last: BaseException | None = None

    def attempt() -> Any:
        nonlocal last
        try:
            return check()
        except RETRIED as exc:
            last = exc
            return None

    try:
        return wait_until(attempt, timeout, interval=interval, what=what)
    except WaitTimeout:
        raise _failure(what, timeout, last) from None


async def async_eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition", *,
                           interval: float = 0.25) -> Any:
    """The event-loop form of ``eventually``: ``check`` may return an awaitable, which is awaited."""
    last: BaseException | None = None

    async def attempt() -> Any:
        nonlocal last
        try:
            result = check()
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
            return result
        except RETRIED as exc:
            last = exc
            return None

    try:
        return await async_wait_until(attempt, timeout, interval=interval, what=what)
    except WaitTimeout:
        raise _failure(what, timeout, last) from None
