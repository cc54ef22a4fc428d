"""Sequence-number bookkeeping for one publisher: what an incoming live batch means.

A publisher numbers its batches 0, 1, 2, ... from its start, and PUB/SUB over one connection
delivers them in order without duplicates. So for each live number the tracker says whether
it is the next one, the first batch of a (re)started publisher (0: its cache was empty), or the
end of a gap: numbers ``missing_from .. seq - 1`` never arrived. A number lower than expected
can only come from a publisher that restarted and whose first batches were lost
(``restarted``: the cache was empty at ``missing_from`` = 0, so the index must be cleared).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    NEXT = "next"  # apply
    RESTART = "restart"  # sequence 0: the publisher started (again) with an empty cache; apply
    GAP = "gap"  # batches missing_from .. seq-1 are missing; then apply


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    missing_from: int = 0  # first missing number (GAP only)
    restarted: bool = False  # GAP only: the publisher restarted (clear before filling the gap)


class SequenceTracker:
    def __init__(self) -> None:
        self.expected: int | None = None  # next number wanted; None before the first batch

    def check(self, seq: int) -> Check:
        expected = self.expected
        if seq == 0:
            return Check(Verdict.RESTART)
        if expected is None:
            return Check(Verdict.GAP, 0)  # joined late: 0 .. seq-1 were never seen here
        if seq == expected:
            return Check(Verdict.NEXT)
        if seq > expected:
            return Check(Verdict.GAP, expected)
        return Check(Verdict.GAP, 0, restarted=True)

    def applied(self, seq: int) -> None:
        self.expected = seq + 1
