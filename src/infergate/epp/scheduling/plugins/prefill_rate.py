"""Each endpoint's prefill rate while saturated, and the speed factor it gives (off by default).

A speed signal that arrives before any request completes (issue 16's ``heterogeneous`` pool, the
last 2 of 4 replicas at twice the step time): the servers' first-token counts (``InflightLoad.
observe_first_tokens``) end the pending prefill of this EPP's oldest prefilling requests on an
endpoint, with their uncached tokens known. Between two scrapes of an endpoint whose pending
prefill was at least ``saturated_tokens`` (a server step's token budget: the server had a full
step of prompt tokens to compute for the whole interval) the tokens released at the later scrape
were prefilled in that interval's time. Per endpoint: those tokens over that time is its prefill
rate (prompt tokens per second, at full load); its factor is the fastest endpoint's rate over its
own, when at least ``threshold`` (below: 1.0), at most ``high``; 1.0 until it and another endpoint
have ``min_tokens`` released in saturated intervals. Past ``window`` seconds of saturated time the
sums are halved (old samples fade).

Decision replay, ``heterogeneous`` closed loop: the 2x slower replicas' factors reach 2-3 within
~2.5 model seconds (their first prefill step). docs/epp.md ("Speed factor") has why it is off by
default: the placement that decides that workload's tail is made at t = 0, before any signal.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFILL_RATE_MIN_TOKENS = 0  # 0: off
DEFAULT_PREFILL_RATE_WINDOW_S = 30.0
MAX_RATE_ENDPOINTS = 4096


def bounded_factor(ratio: float, threshold: float, high: float) -> float:
    """A speed factor from an endpoint's ratio to the fastest endpoint: the ratio, at most
    ``high``, when it is at least ``threshold``; else 1.0 (no change). Both speed signals use it
    (``PrefillRate`` here, ``EndpointSpeed`` in inflight.py)."""
    return min(high, ratio) if ratio >= threshold else 1.0


@dataclass
class _Rate:
    tokens: float = 0.0  # released in saturated intervals
    seconds: float = 0.0  # the saturated intervals' time
    last_when: float | None = None  # the previous scrape's time
    last_saturated: bool = False  # pending prefill >= saturated_tokens after the previous scrape


class PrefillRate:
    def __init__(self, min_tokens: int = DEFAULT_PREFILL_RATE_MIN_TOKENS, saturated_tokens: int = 8192,
                 threshold: float = 1.5, high: float = 4.0, window: float = DEFAULT_PREFILL_RATE_WINDOW_S) -> None:
        self.min_tokens = min_tokens
        self.saturated_tokens = saturated_tokens
        self.threshold = threshold
        self.high = high
        self.window = window
        self._rates: dict[str, _Rate] = {}
        self._fastest: tuple[int, float] | None = None  # (endpoints ready, best rate), until the next sample

    @property
    def enabled(self) -> bool:
        return self.min_tokens > 0

    def observe(self, hostport: str, when: float, released_tokens: float, pending_after: float) -> None:
        """A scrape of ``hostport`` taken at ``when`` ended the pending prefill of ``released_tokens``
        uncached tokens (first-token counts); ``pending_after`` is this EPP's pending prefill there
        after it. A scrape not later than the previous one changes nothing."""
        if self.min_tokens <= 0:
            return
        rate = self._rates.get(hostport)
        if rate is None:
            if len(self._rates) >= MAX_RATE_ENDPOINTS:
                self._rates.clear()
            rate = self._rates[hostport] = _Rate()
        if rate.last_when is not None:
            elapsed = when - rate.last_when
            if elapsed <= 0:
                return
            if rate.last_saturated:
                rate.tokens += released_tokens
                rate.seconds += elapsed
                if rate.seconds > self.window:
                    rate.tokens /= 2
                    rate.seconds /= 2
                self._fastest = None
        rate.last_when = when
        rate.last_saturated = pending_after >= self.saturated_tokens

    def rate(self, hostport: str) -> float | None:
        """Prompt tokens per second prefilled at full load (None: fewer than ``min_tokens`` seen)."""
        rate = self._rates.get(hostport)
        if rate is None or rate.tokens < self.min_tokens or rate.seconds <= 0:
            return None
        return rate.tokens / rate.seconds

    def factor(self, hostport: str) -> float:
        """``hostport``'s speed factor: 1.0, or in [``threshold``, ``high``] (see the module doc)."""
        if self.min_tokens <= 0:
            return 1.0
        own = self.rate(hostport)
        if own is None:
            return 1.0
        if self._fastest is None:  # once per sample, not per candidate and pick
            ready = [r for r in (self.rate(h) for h in self._rates) if r is not None]
            self._fastest = (len(ready), max(ready))
        count, fastest = self._fastest
        if count < 2 or own <= 0:
            return 1.0
        return bounded_factor(fastest / own, self.threshold, self.high)
