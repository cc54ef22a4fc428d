"""Saturation detector (upstream v1.0's, gie.md §3.6).

The pool is saturated unless some endpoint has metrics no older than
``metrics_staleness_threshold`` (200 ms) with waiting queue <= ``queue_depth_threshold`` (5)
and KV cache utilization <= ``kv_cache_util_threshold`` (0.8). No endpoints = saturated.
Upstream reads the thresholds from ``SD_QUEUE_DEPTH_THRESHOLD``,
``SD_KV_CACHE_UTIL_THRESHOLD`` and ``SD_METRICS_STALENESS_THRESHOLD``; ``from_env`` does too
(the staleness threshold is a Go duration or seconds; other text raises ``SaturationConfigError``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from infergate.epp.metrics_scraper import MetricsStore
from infergate.util.durations import DurationError, parse_seconds


class SaturationConfigError(ValueError):
    """An SD_* environment variable holds text that is not a value of its kind."""


@dataclass(frozen=True)
class SaturationConfig:
    queue_depth_threshold: int = 5
    kv_cache_util_threshold: float = 0.8
    metrics_staleness_threshold: float = 0.2  # seconds

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SaturationConfig:
        env = os.environ if env is None else env
        config = cls()
        queue, kv, stale = config.queue_depth_threshold, config.kv_cache_util_threshold, config.metrics_staleness_threshold
        try:
            queue = int(env.get("SD_QUEUE_DEPTH_THRESHOLD", queue))
        except ValueError:
            pass
        try:
            value = float(env.get("SD_KV_CACHE_UTIL_THRESHOLD", kv))
            if 0 < value < 1:  # upstream: outside (0, 1) keeps the default
                kv = value
        except ValueError:
            pass
        raw = env.get("SD_METRICS_STALENESS_THRESHOLD")
        if raw:
            try:
                stale = parse_seconds(raw)
            except DurationError:
                raise SaturationConfigError(
                    f"SD_METRICS_STALENESS_THRESHOLD={raw!r} is not a duration (examples: 200ms, 1s, 1m30s)"
                ) from None
        return cls(queue, kv, stale)


class SaturationDetector:
    def __init__(self, store: MetricsStore, config: SaturationConfig | None = None) -> None:
        self.store = store
        self.config = config or SaturationConfig()

    def has_capacity(self, hostport: str, now: float) -> bool:
        c = self.config
        m = self.store.fresh(hostport, now, c.metrics_staleness_threshold)
        return m is not None and m.waiting_queue <= c.queue_depth_threshold and m.kv_cache_usage <= c.kv_cache_util_threshold

    def is_saturated(self, hostports: Iterable[str], now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return not any(self.has_capacity(h, now) for h in hostports)

    def headroom(self, hostports: Iterable[str], now: float | None = None) -> int:
        """Requests the pool can still take before every endpoint is over the queue threshold,
        from the last fresh metrics (flow control releases at most this many per refresh)."""
        now = time.monotonic() if now is None else now
        c = self.config
        total = 0
        for h in hostports:
            m = self.store.fresh(h, now, c.metrics_staleness_threshold)
            if m is not None and m.kv_cache_usage <= c.kv_cache_util_threshold:
                total += max(0, c.queue_depth_threshold - m.waiting_queue + 1)
        return total
