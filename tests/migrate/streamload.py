"""A steady streamed-completions load through a gateway, for the migration tests."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import aconnect_sse


async def paced(rate: float, stop: threading.Event, request: Callable[[int], Coroutine[Any, Any, None]]) -> None:
    """Start ``request(i)`` for i = 0, 1, ... at ``rate`` per second (open loop: no waiting for
    answers) until ``stop`` is set, then wait for those in flight."""
    tasks: set[asyncio.Task[None]] = set()
    start, i = time.monotonic(), 0
    while not stop.is_set():
        task = asyncio.create_task(request(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
    await asyncio.gather(*tasks)


@dataclass(frozen=True)
class Failure:
    """A request that did not answer 200 (monotonic times)."""

    started: float
    ended: float
    model: str
    status: int  # 0: a transport error
    error: str


@dataclass
class StreamLoad:
    """Streamed ``/v1/completions`` at ``rate`` per second, alternating ``models``, until stopped.

    ``run()`` in the test's event loop, or ``run_in_thread()`` as a thread's target; ``stop()``
    from anywhere. ``results`` holds (start time, model, HTTP status; 0 for a transport error);
    ``failures`` says more of each request that did not answer 200: when it started and ended,
    its model, and the error (the exception, or the status and the start of the body), and
    ``describe_failures()`` puts them in words, relative to the load's start.
    """

    url: str
    models: tuple[str, ...]
    prompt: str
    rate: float = 60.0
    timeout_s: float = 30.0
    max_connections: int = 200
    results: list[tuple[float, str, int]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    started_at: float | None = None  # time.monotonic() of the first request
    _stop: threading.Event = field(default_factory=threading.Event)

    async def one(self, client: httpx.AsyncClient, model: str) -> None:
        started, status, error = time.monotonic(), 0, ""
        try:
            async with aconnect_sse(client, "POST", f"{self.url}/v1/completions", json={
                    "model": model, "prompt": self.prompt, "max_tokens": 8, "stream": True}) as events:
                response = events.response
                if response.headers.get("content-type", "").startswith("text/event-stream"):
                    async for _ in events.aiter_sse():  # the whole stream, up to [DONE]
                        pass
                else:  # an error answer
                    await response.aread()
                    error = response.text[:200]
                status = response.status_code
        except httpx.HTTPError as exc:
            status, error = 0, f"{type(exc).__name__}: {exc}"
            if exc.__cause__ is not None:
                error += f" (from {type(exc.__cause__).__name__}: {exc.__cause__})"
        self.results.append((started, model, status))
        if status != 200:
            self.failures.append(Failure(started, time.monotonic(), model, status, error))

    async def run(self) -> None:
        self.started_at = time.monotonic()
        limits = httpx.Limits(max_connections=self.max_connections)
        async with httpx.AsyncClient(timeout=self.timeout_s, limits=limits) as client:
            await paced(self.rate, self._stop, lambda i: self.one(client, self.models[i % len(self.models)]))

    def run_in_thread(self) -> None:
        asyncio.run(self.run())

    @contextlib.contextmanager
    def in_thread(self, warmup_s: float, join_s: float) -> Iterator[StreamLoad]:
        """Run in a thread for the block (after ``warmup_s``); stop and join (bounded) at exit."""
        thread = threading.Thread(target=self.run_in_thread)
        thread.start()
        try:
            time.sleep(warmup_s)
            yield self
        finally:
            self.stop()
            thread.join(join_s)

    def stop(self) -> None:
        self._stop.set()

    def describe_failures(self, marks: Sequence[tuple[float, str]] = (), limit: int = 10) -> str:
        """The failed requests, each with its start and end (seconds since the load started) and
        error, and the last of ``marks`` (monotonic time, what the test was doing) before it."""
        origin = self.started_at if self.started_at is not None else 0.0
        lines = [f"{len(self.failures)} of {len(self.results)} requests failed"]
        for failure in self.failures[:limit]:
            during = [what for at, what in marks if at <= failure.started]
            lines.append(f"  t={failure.started - origin:.3f}s..{failure.ended - origin:.3f}s {failure.model}: "
                         f"status {failure.status} {failure.error!r}"
                         + (f" during {during[-1]!r}" if during else ""))
        if marks:
            lines.append("  marks: " + ", ".join(f"{at - origin:.1f}s {what}" for at, what in marks))
        return "\n".join(lines)

    def achieved_rate(self) -> float:
        starts = [s for s, _, _ in self.results]
        return len(starts) / (max(starts) - min(starts)) if len(starts) > 1 else 0.0
