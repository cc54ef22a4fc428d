"""The pool's recent latency, from the model servers' own histograms (``_sum`` and ``_count``).

vLLM exports cumulative histograms of every request's time to first token
(``vllm:time_to_first_token_seconds``) and inter-token latency
(``vllm:inter_token_latency_seconds``); the EPP scrapes their ``_sum`` and ``_count`` with the
other series (``EndpointMetrics.ttft_sum`` ...). ``LatencyWindow`` keeps each endpoint's scrapes of
the last ``window`` seconds and gives the mean over that window: (sum now - sum then) /
(count now - count then), per endpoint or pooled (the pool's requests weighted equally). A
counter that goes down (the server restarted) starts that endpoint's history again. An endpoint
whose page has no such series contributes nothing (the signal is unknown, never zero).

Single event loop; fed by ``observe`` on every successful scrape (``MetricsStore.subscribe``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from infergate.epp.metrics_scraper import EndpointMetrics


@dataclass(frozen=True)
class LatencySample:
    time: float
    ttft_sum: float
    ttft_count: float
    itl_sum: float
    itl_count: float


@dataclass(frozen=True)
class WindowMean:
    """Means over a window (None: no request counted there) and the requests counted."""

    ttft: float | None
    ttft_requests: float
    itl: float | None
    itl_tokens: float


class LatencyWindow:
    def __init__(self, window: float = 1.0) -> None:
        if window <= 0:
            raise ValueError(f"latency window must be > 0 seconds, got {window}")
        self.window = window
        self._samples: dict[str, deque[LatencySample]] = {}

    def observe(self, hostport: str, metrics: EndpointMetrics | None) -> None:
        """Record one scrape of ``hostport`` (ignored when its page had no latency histograms)."""
        if metrics is None or metrics.ttft_count is None:
            return
        sample = LatencySample(metrics.update_time, metrics.ttft_sum or 0.0, metrics.ttft_count,
                               metrics.itl_sum or 0.0, metrics.itl_count or 0.0)
        samples = self._samples.get(hostport)
        if samples is None:
            samples = self._samples[hostport] = deque()
        elif samples and (sample.ttft_count < samples[-1].ttft_count or sample.itl_count < samples[-1].itl_count):
            samples.clear()  # counters went down: the server restarted
        samples.append(sample)
        # keep one sample at or before the window's start (the baseline of the deltas)
        start = sample.time - self.window
        while len(samples) > 1 and samples[1].time <= start:
            samples.popleft()

    def forget(self, hostport: str) -> None:
        self._samples.pop(hostport, None)

    def _deltas(self, hostport: str, now: float) -> tuple[float, float, float, float]:
        samples = self._samples.get(hostport)
        if not samples or len(samples) < 2 or now - samples[-1].time > self.window:
            return 0.0, 0.0, 0.0, 0.0
        first, last = samples[0], samples[-1]
        return (last.ttft_sum - first.ttft_sum, last.ttft_count - first.ttft_count,
                last.itl_sum - first.itl_sum, last.itl_count - first.itl_count)

    def mean(self, hostports: Iterable[str], now: float) -> WindowMean:
        """The pooled means of ``hostports`` over the last ``window`` seconds (before ``now``)."""
        ttft_sum = ttft_count = itl_sum = itl_count = 0.0
        for h in hostports:
            ts, tc, is_, ic = self._deltas(h, now)
            ttft_sum += ts
            ttft_count += tc
            itl_sum += is_
            itl_count += ic
        return WindowMean(ttft_sum / ttft_count if ttft_count > 0 else None, ttft_count,
                          itl_sum / itl_count if itl_count > 0 else None, itl_count)
