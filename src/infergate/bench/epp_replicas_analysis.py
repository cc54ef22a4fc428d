"""The analysis of the EPP-replicas benchmark: where a load step stops following the
offered rate (the knee), and how often a pick lands where the prefix is cached.

Pure functions over recorded numbers (no processes, no I/O): unit-tested in
``tests/bench/test_epp_replicas.py``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One load step: the rate asked for, what was sent and answered, and the EPP's reply latency."""

    offered: float  # requests/s asked for
    sent: float  # requests/s the client actually started (it may fall behind on a busy machine)
    achieved: float  # requests/s answered within the step's window
    p50_ms: float  # the EPP's decision latency (request body sent -> its reply with the pick)
    p99_ms: float


@dataclass(frozen=True)
class Knee:
    """The last step that still followed the offered rate, and why the next one did not."""

    index: int  # into the steps; -1 if even the first step did not follow
    achieved: float  # requests/s at the knee
    ceiling: float  # the most requests/s answered at any step
    reason: str  # why the step after the knee does not count as following ("" if every step followed)


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples`` by the nearest rank; 0.0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1)) if q < 1 else len(ordered) - 1
    return ordered[rank]


def follows(step: Step, reference_p50_ms: float, *, min_ratio: float = 0.9, latency_factor: float = 5.0,
            latency_floor_ms: float = 5.0) -> str:
    """Why ``step`` does not follow its offered rate ("" if it does): fewer than ``min_ratio``
    of the offered requests answered per second, or a median decision latency above
    ``latency_factor`` times the unloaded one (and above ``latency_floor_ms``: a few
    milliseconds of jitter on a shared machine are not saturation). The median, not the
    p99: on a machine shared with other processes the p99 jumps with their bursts at any
    rate, while a queue building up in the EPP moves the median."""
    if step.offered > 0 and step.achieved < min_ratio * step.offered:
        return f"answered {step.achieved:.0f} of {step.offered:.0f} req/s offered (< {min_ratio:.0%})"
    limit = max(latency_floor_ms, latency_factor * reference_p50_ms)
    if step.p50_ms > limit:
        return f"decision p50 {step.p50_ms:.1f} ms > {limit:.1f} ms"
    return ""


def find_knee(steps: Sequence[Step], *, min_ratio: float = 0.9, latency_factor: float = 5.0,
              latency_floor_ms: float = 5.0) -> Knee:
    """The knee of a run of steps of increasing offered rate: the last step before the
    first one that does not follow (see :func:`follows`; the first step's p50 is the
    unloaded reference). Steps after the first failure do not count even if they look
    fine again (a noisy machine can make one step lucky)."""
    if not steps:
        return Knee(-1, 0.0, 0.0, "no steps")
    ordered = sorted(steps, key=lambda s: s.offered)
    if list(ordered) != list(steps):
        raise ValueError("steps must be in increasing order of offered rate")
    reference = steps[0].p50_ms
    ceiling = max(s.achieved for s in steps)
    for i, step in enumerate(steps):
        reason = follows(step, reference, min_ratio=min_ratio, latency_factor=latency_factor,
                         latency_floor_ms=latency_floor_ms)
        if reason:
            return Knee(i - 1, steps[i - 1].achieved if i else 0.0, ceiling, f"at {step.offered:.0f} req/s: {reason}")
    return Knee(len(steps) - 1, steps[-1].achieved, ceiling, "")


# ---- prefix affinity ------------------------------------------------------------------------------

def session_sequence(prefixes: int, per_prefix: int, rng: random.Random) -> list[int]:
    """The prefix (system prompt / conversation) of each request in order: each of
    ``prefixes`` appears ``per_prefix`` times, interleaved at random."""
    sequence = [p for p in range(prefixes) for _ in range(per_prefix)]
    rng.shuffle(sequence)
    return sequence


@dataclass(frozen=True)
class Affinity:
    """Where the requests of a shared-prefix sequence went, against a simulated prefix cache."""

    requests: int
    hits: int  # requests sent to an endpoint that already served their prefix
    possible: int  # requests whose prefix some endpoint already held (the most any picker could hit)
    copies: float  # endpoints per prefix (mean): how many times the pool caches each prefix

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def hit_rate_of_possible(self) -> float:
        return self.hits / self.possible if self.possible else 0.0


def simulated_cache_hits(prefixes: Sequence[int], picks: Sequence[str]) -> Affinity:
    """Replay the picks in order against a simulated cache: a request is a hit when its
    endpoint already served a request with the same prefix (the model server would find
    its KV blocks); the cache is unbounded (no eviction), so a miss is a pick that a
    shared view of the pool would have avoided, not a capacity effect."""
    if len(prefixes) != len(picks):
        raise ValueError(f"{len(prefixes)} prefixes but {len(picks)} picks")
    cached: dict[str, set[int]] = {}
    seen: set[int] = set()
    hits = possible = 0
    for prefix, endpoint in zip(prefixes, picks, strict=True):
        holding = cached.setdefault(endpoint, set())
        if prefix in seen:
            possible += 1
        if prefix in holding:
            hits += 1
        holding.add(prefix)
        seen.add(prefix)
    holders: dict[int, int] = {}
    for held in cached.values():
        for prefix in held:
            holders[prefix] = holders.get(prefix, 0) + 1
    copies = sum(holders.values()) / len(holders) if holders else 0.0
    return Affinity(len(picks), hits, possible, copies)


def affinity_loss(single: Affinity, replicated: Affinity) -> float:
    """The fraction of one EPP's cache hits that N replicas lose on the same sequence
    (0 = none lost; negative if the replicas happened to hit more)."""
    if single.hits == 0:
        return 0.0
    return 1.0 - replicated.hit_rate / single.hit_rate
