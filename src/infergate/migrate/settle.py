"""Has the data plane taken a weight shift? Pure decisions for the wait before each analysis.

An HTTPRoute is an API object: the gateway serves its new weights only once its controller has
translated it and the data plane (Envoy) has applied the result, a lag of a fraction of a second
on an idle machine and of seconds on a busy controller. The analysis must not measure before
then, or it judges the old split and rolls back for nothing. Two signals are available to a tool
that talks only to the Kubernetes API and to the gateway's address:

* **the route's status**: every parent's conditions carry the ``observedGeneration`` they were
  written for; a parent whose conditions describe an older generation than the route's
  ``metadata.generation`` has not processed the shift (infergate's controller writes them only
  after Envoy ACKed the configuration; other implementations may write them when they translate,
  before the push, so this alone is not proof);
* **the split itself**: short probe windows through the gateway, with the EPPs' request counters
  read around each, until the GA share is demonstrably the new weight's (:class:`SplitWatch`).

The split test, per (preview, GA) pair: the window's GA count ``g`` of ``n`` requests is a
binomial sample. It must be **consistent** with the new share ``w`` (within the attribution
gate's own band, max(floor, 3 sigma), at 0 % and 100 % too: the floor), and the evidence that
the split changed from the previous share ``w0`` must be strong: the log-likelihood ratio of
``w`` against ``w0``, summed over windows as a CUSUM (``max(0, S + llr)``: windows that favour
the old split reset it, so the old split's windows never count for the new one), must reach
ln(100). The likelihoods take a share of 0 or 1 as ``STRAY_SHARE`` from it: another route to
the same pool, or a request in flight across the shift, may reach the other side, and one such
request must neither prove a split nor hold the wait until its timeout. When ``w0`` equals
``w`` (or is unknown) only consistency is asked: no window could tell the two apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from infergate.migrate.gates import attribution_tolerance

# The evidence the split changed: the new share must be this many times more likely than the old
# one (a CUSUM's false alarm rate under the old split is about e^-h per window).
SETTLED_LOG_RATIO = math.log(100.0)
# The share the likelihoods give the other side at 0 % or 100 % GA (see the module doc).
STRAY_SHARE = 0.01


# -- the route's status ---------------------------------------------------------------------------


def parent_generation_lag(route: Mapping[str, Any]) -> list[str]:
    """The parents of ``route`` (those in ``spec.parentRefs``) whose status conditions were written
    for an older generation than the route's ``metadata.generation``, one description each; empty
    when every parent's status is current. Conditions without ``observedGeneration`` (optional in
    metav1.Condition), a route without ``metadata.generation`` and a parent with no status entry
    yet (the status checks wait for that one) are not judged here."""
    generation = (route.get("metadata") or {}).get("generation")
    if not isinstance(generation, int):
        return []
    namespace = (route.get("metadata") or {}).get("namespace")
    entries = ((route.get("status") or {}).get("parents")) or []
    lagging: list[str] = []
    for ref in (route.get("spec") or {}).get("parentRefs") or []:
        ref_ns = ref.get("namespace") or namespace
        for entry in entries:
            parent = entry.get("parentRef") or {}
            if parent.get("name") != ref.get("name") or (parent.get("namespace") or namespace) != ref_ns:
                continue
            seen = [c["observedGeneration"] for c in entry.get("conditions") or []
                    if isinstance(c.get("observedGeneration"), int)]
            if seen and min(seen) < generation:
                by = f" by {entry['controllerName']}" if entry.get("controllerName") else ""
                lagging.append(f"parent {ref.get('name')}: status written{by} for generation {min(seen)}, "
                               f"the route is at generation {generation}")
    return lagging


# -- the split ------------------------------------------------------------------------------------


def split_log_likelihood(ga: float, total: float, share: float) -> float:
    """log P(``ga`` GA requests of ``total`` | GA share ``share``), without the binomial
    coefficient (the same for every share); a share of 0 or 1 counts as ``STRAY_SHARE`` from it."""
    preview = max(0.0, total - ga)
    share = min(max(share, STRAY_SHARE), 1.0 - STRAY_SHARE)
    return ga * math.log(share) + preview * math.log(1.0 - share)


def split_consistent(ga: float, total: float, share: float, floor: float) -> bool:
    """Whether ``ga`` GA requests of ``total`` is a split at GA share ``share``: within the
    attribution gate's band max(``floor``, 3 sigma) of it (at share 0 or 1: the floor). No
    requests: no."""
    if total <= 0:
        return False
    return abs(ga / total - share) <= attribution_tolerance(share, total, floor)


@dataclass(frozen=True)
class SplitTracker:
    """One (preview, GA) pair's evidence, window after window, that its split moved from
    ``previous`` to ``share`` (GA shares, 0..1; ``previous`` None: unknown)."""

    share: float
    previous: float | None
    floor: float = 0.10
    evidence: float = 0.0  # the CUSUM of log-likelihood ratios, new against previous
    last: tuple[float, float] = (0.0, 0.0)  # (GA, total) requests of the last window

    def observe(self, ga: float, total: float) -> SplitTracker:
        """The tracker after a window in which ``ga`` of ``total`` requests went to the GA pool."""
        new = split_log_likelihood(ga, total, self.share)
        old = new if self.previous is None else split_log_likelihood(ga, total, self.previous)
        return replace(self, evidence=max(0.0, self.evidence + new - old), last=(ga, total))

    @property
    def distinguishable(self) -> bool:
        return self.previous is not None and self.previous != self.share

    @property
    def settled(self) -> bool:
        ga, total = self.last
        if not split_consistent(ga, total, self.share, self.floor):
            return False
        return not self.distinguishable or self.evidence >= SETTLED_LOG_RATIO

    def describe(self) -> str:
        ga, total = self.last
        if total <= 0:
            return "no requests"
        band = f" +/- {attribution_tolerance(self.share, total, self.floor):.3f}"
        text = f"GA share {ga / total:.3f} of {total:.0f} requests (expected {self.share:.2f}{band}"
        if self.distinguishable:
            assert self.previous is not None
            odds = f"log-odds {self.evidence:.1f} of {SETTLED_LOG_RATIO:.1f}"
            text += f"; against the previous {self.previous:.2f}: {odds}"
        return text + ")"


@dataclass(frozen=True)
class SplitWatch:
    """Every (preview, GA) pair's :class:`SplitTracker`: settled when all are."""

    pairs: tuple[tuple[str, str], ...]
    trackers: tuple[SplitTracker, ...]

    @classmethod
    def start(cls, pairs: Sequence[tuple[str, str]], ga_weight: int, previous_weight: int | None,
              floor: float) -> SplitWatch:
        """Watching for the shift from ``previous_weight`` to ``ga_weight`` (percentages of GA)."""
        previous = None if previous_weight is None else previous_weight / 100
        tracker = SplitTracker(ga_weight / 100, previous, floor)
        return cls(tuple(pairs), tuple(tracker for _ in pairs))

    def observe(self, pool_requests: Mapping[str, float]) -> SplitWatch:
        """After a window: ``pool_requests`` is the requests each pool's EPP scheduled in it."""
        trackers = []
        for (preview, ga), tracker in zip(self.pairs, self.trackers, strict=True):
            g, p = float(pool_requests.get(ga, 0.0)), float(pool_requests.get(preview, 0.0))
            trackers.append(tracker.observe(g, g + p))
        return replace(self, trackers=tuple(trackers))

    @property
    def settled(self) -> bool:
        return bool(self.trackers) and all(t.settled for t in self.trackers)

    @property
    def requests(self) -> float:
        """The requests of the last window, over all pairs."""
        return sum(t.last[1] for t in self.trackers)

    def describe(self) -> str:
        return "; ".join(f"{ga}: {t.describe()}" for (_, ga), t in zip(self.pairs, self.trackers, strict=True))


def previous_weight(weights: Sequence[int], ga_weight: int) -> int:
    """The GA weight the route had before the shift to ``ga_weight`` in the plan's ``weights``:
    the step before it, or 0 (the original route sends nothing to GA) for the first."""
    earlier = [w for w in weights if w < ga_weight]
    return earlier[-1] if earlier else 0
