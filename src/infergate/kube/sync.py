"""A blocking facade over :class:`KubeClient`, for code that is not on an event loop.

The async client runs on a private event loop in its own thread; each call blocks until its
coroutine finishes there. Several threads may call at once; callers on an event loop use
``asyncio.to_thread``. The one place infergate turns the async client into a sync one (the
migration's cluster access and ``infergate status`` use it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from infergate.kube.client import KubeClient
from infergate.kube.config import KubeConfig

T = TypeVar("T")


class BlockingKubeClient:
    """Owns a :class:`KubeClient` on a private loop thread; ``call(lambda c: c.get(...))`` blocks.

    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, config: KubeConfig, *, request_timeout: float = 30.0, name: str = "kube-client") -> None:
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self._client = KubeClient(config, request_timeout=request_timeout)
        try:
            self.run(self._client.open())
        except BaseException:
            self._stop_loop()
            raise

    def __enter__(self) -> BlockingKubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, call: Coroutine[Any, Any, T]) -> T:
        """Run one coroutine on the client's loop and return its result (its exception is raised here)."""
        return asyncio.run_coroutine_threadsafe(call, self._loop).result()

    def call(self, use: Callable[[KubeClient], Coroutine[Any, Any, T]]) -> T:
        """``use(client)`` on the client's loop: ``blocking.call(lambda c: c.list(path))``."""
        return self.run(use(self._client))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self.run(self._client.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
