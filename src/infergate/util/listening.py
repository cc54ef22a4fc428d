"""Starting a server on the port a flag gave, with an error that names the flag."""

from __future__ import annotations

from collections.abc import Awaitable, Callable


class CannotListen(Exception):
    """A server could not bind its port (taken, or the host is not an address of this machine)."""


async def listen(flag: str, port: int, start: Callable[[], Awaitable[None]]) -> None:
    """``await start()``; its ``OSError`` becomes ``CannotListen("cannot start (FLAG PORT): why")``."""
    try:
        await start()
    except OSError as exc:
        raise CannotListen(f"cannot start ({flag} {port}): {exc}") from exc
