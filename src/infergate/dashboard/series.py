"""Time series for the dashboard: status snapshots sampled in the background, kept in a ring buffer.

``Sampler.run()`` collects one snapshot after another (each one scrapes the metrics twice,
``interval`` seconds apart, so a sample's rates are over that window); the newest snapshot is
what ``/dashboard/api/status`` returns and each one adds a ``Sample`` (per pool: request rate,
errors, TTFT; per endpoint: requests and errors per second, queue, running, KV cache, TTFT; per
route backend: its weight) to a deque bounded by ``capacity``. ``start``/``stop`` run it as a
task that stops cleanly.

With ``idle_after`` (the gateway's admin port, always on), sampling pauses when no page asked
for ``idle_after`` seconds, and ``touch()`` (each API request) resumes it; started with
``on_first_page``, it waits for the first page request: a gateway nobody watches does not scrape
its endpoints for the dashboard.

``INFERGATE_DASHBOARD_SAMPLE_S`` (seconds, > 0), when set, is the sampling window of every
dashboard the process serves (the gateway's admin port, `infergate serve`, `infergate migrate
run`), with a pause of at most half of it between samples; unset, the window is 2 s and the pause
1 s. The tests set it small so that a page shows a change in well under a second instead of ~3 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from infergate.status.collect import collect_status
from infergate.status.model import StatusSnapshot
from infergate.status.sources import Reader
from infergate.util.durations import DurationError, parse_seconds

log = logging.getLogger(__name__)

Collect = Callable[[], Awaitable[StatusSnapshot]]
SAMPLE_ENV = "INFERGATE_DASHBOARD_SAMPLE_S"
DEFAULT_PAUSE_S = 1.0


def sample_window(default: float, environ: dict[str, str] | None = None) -> float:
    """``default``, or the seconds in ``INFERGATE_DASHBOARD_SAMPLE_S`` when it is set (a positive
    number of seconds or Go duration; anything else is an error naming the variable)."""
    text = (os.environ if environ is None else environ).get(SAMPLE_ENV, "").strip()
    if not text:
        return default
    try:
        seconds = parse_seconds(text)
    except DurationError:
        seconds = float("nan")
    if not seconds > 0:
        raise ValueError(f"{SAMPLE_ENV}={text!r}: must be a positive number of seconds")
    return seconds


@dataclass(frozen=True)
class Sample:
    at: str
    pools: dict[str, dict[str, float | None]]
    endpoints: dict[str, dict[str, float | None]]
    weights: dict[str, int]  # "ns/route#rule backend" -> weight

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "pools": self.pools, "endpoints": self.endpoints, "weights": self.weights}


def sample_of(snapshot: StatusSnapshot) -> Sample:
    pools: dict[str, dict[str, float | None]] = {}
    endpoints: dict[str, dict[str, float | None]] = {}
    for pool in snapshot.pools:
        key = f"{pool.namespace}/{pool.name}"
        t = pool.traffic
        pools[key] = {
            "requests_per_s": t.requests_per_s if t else None, "errors_per_s": t.errors_per_s if t else None,
            "ttft_p50_s": t.ttft_p50_s if t else None, "ttft_p90_s": t.ttft_p90_s if t else None,
            "latency_p50_s": t.latency_p50_s if t else None,
        }
        for e in pool.endpoints:
            endpoints[f"{key} {e.name}"] = {
                "queue": e.queue, "running": e.running, "kv_cache": e.kv_cache, "ttft_p50_s": e.ttft_p50_s,
                "requests_per_s": e.requests_per_s, "errors_per_s": e.errors_per_s,
            }
    weights: dict[str, int] = {}
    for route in snapshot.routes:
        for i, rule in enumerate(route.rules):
            for b in rule.backends:
                weights[f"{route.namespace}/{route.name}#{i} {b.kind} {b.name}"] = b.weight
    return Sample(snapshot.taken_at, pools, endpoints, weights)


class Sampler:
    def __init__(self, collect: Collect, *, capacity: int = 300, pause_s: float = DEFAULT_PAUSE_S,
                 idle_after: float | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._collect = collect
        self.samples: deque[Sample] = deque(maxlen=capacity)
        self.latest: StatusSnapshot | None = None
        self.last_error: str | None = None
        self.pause_s = pause_s
        self.idle_after = idle_after
        self._touched = time.monotonic()
        self._enabled = False
        self._task: asyncio.Task[None] | None = None
        self.updated = asyncio.Event()

    @classmethod
    def for_reader(cls, reader: Reader, *, interval: float = 2.0, capacity: int = 300,
                   idle_after: float | None = None, environ: dict[str, str] | None = None) -> Sampler:
        """Samples of ``reader`` over ``interval`` seconds each (``INFERGATE_DASHBOARD_SAMPLE_S``
        in ``environ``, default the process's environment, overrides it)."""
        window = sample_window(interval, environ)

        async def collect() -> StatusSnapshot:
            return await collect_status(reader, sample_interval=window)
        return cls(collect, capacity=capacity, pause_s=min(DEFAULT_PAUSE_S, window / 2), idle_after=idle_after)

    async def sample_once(self) -> StatusSnapshot:
        snapshot = await self._collect()
        self.latest = snapshot
        self.samples.append(sample_of(snapshot))
        self.updated.set()
        return snapshot

    def _idle(self) -> bool:
        return self.idle_after is not None and time.monotonic() - self._touched > self.idle_after

    async def run(self) -> None:
        while not self._idle():
            try:
                await self.sample_once()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a reader that fails once (a restarting API server) is retried
                log.debug("dashboard sample failed", exc_info=True)
                self.last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(self.pause_s)

    def start(self, *, on_first_page: bool = False) -> None:
        """Sample from now on; with ``on_first_page``, from the first page request on (a server
        nobody looks at, such as a gateway's admin port, scrapes nothing for its dashboard)."""
        self._enabled = True
        self._touched = time.monotonic()
        if on_first_page:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="dashboard-sampler")

    def touch(self) -> None:
        """A page asked: resume sampling if it paused for lack of watchers."""
        self._touched = time.monotonic()
        if self._enabled and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self.run(), name="dashboard-sampler")

    @property
    def sampling(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        self._enabled = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def series(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.samples]
