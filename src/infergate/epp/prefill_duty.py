"""Each endpoint's prefill duty: the recent fraction of time it had prompt tokens waiting to be prefilled.

A model server prefills the prompts it was sent in order; while one is pending, a request sent
there next waits for it (the queue's utilization, a fraction: what it means does not depend on
the hardware's speed). ``PrefillDuty`` keeps, per endpoint, an exponentially weighted mean of
"something was pending" over the samples it is given (one per scrape, by the saturation
detector: ``observe``), each weighted by the time since the previous sample, with time constant
``time_constant`` seconds: busy for one time constant brings the fraction from 0 to 0.63, quiet
for one brings it back by the same factor. An endpoint never observed has fraction 0.

Single event loop; bounded: at most ``max_endpoints`` are kept (the least recently observed
half is forgotten past it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_ENDPOINTS = 4096


@dataclass
class _Duty:
    fraction: float
    last: float  # the time of the last sample


class PrefillDuty:
    def __init__(self, time_constant: float = 1.0, max_endpoints: int = MAX_ENDPOINTS) -> None:
        if time_constant <= 0:
            raise ValueError(f"prefill duty time constant must be > 0 seconds, got {time_constant}")
        self.time_constant = time_constant
        self.max_endpoints = max_endpoints
        self._duty: dict[str, _Duty] = {}

    def observe(self, hostport: str, when: float, busy: bool) -> None:
        """A sample of ``hostport`` at ``when``: whether prompt tokens were waiting to be prefilled
        there. The first sample sets the fraction; a sample not later than the previous one
        changes nothing."""
        value = 1.0 if busy else 0.0
        duty = self._duty.get(hostport)
        if duty is None:
            if len(self._duty) >= self.max_endpoints:
                self._forget_oldest()
            self._duty[hostport] = _Duty(value, when)
            return
        elapsed = when - duty.last
        if elapsed <= 0:
            return
        weight = 1.0 - math.exp(-elapsed / self.time_constant)
        duty.fraction += weight * (value - duty.fraction)
        duty.last = when

    def fraction(self, hostport: str) -> float:
        """``hostport``'s recent fraction of time busy prefilling, in [0, 1] (0: never observed)."""
        duty = self._duty.get(hostport)
        return 0.0 if duty is None else duty.fraction

    def _forget_oldest(self) -> None:
        by_age = sorted(self._duty, key=lambda h: self._duty[h].last)
        for hostport in by_age[: max(1, len(by_age) // 2)]:
            del self._duty[hostport]

    def __len__(self) -> int:
        return len(self._duty)
