"""Issue 16's targets, checked on a peer benchmark's result for infergate's default profile.

Per workload/phase, against the same run's (with repeats: the same repeat's) best peer and oracle:

- TTFT p90 at most :data:`TTFT_VS_PEER` x the best peer's and at most :data:`TTFT_VS_ORACLE` x
  the oracle's;
- closed loop: output tokens/s at least the best peer's (:data:`OUTPUT_VS_PEER`);
- priority workloads: the critical requests' goodput at least :data:`CRITICAL_GOODPUT_VS_PEER` x
  the best peer's (their summaries measure the critical requests only);
- no failed request (deliberate sheds are counted apart);
- with repeats: the per-repeat ratios within :data:`MAX_SPREAD` of each other (max/min - 1).

A missed target says by how much, and what the oracle -- which reads the replicas' true state --
reached against the same reference: where the oracle misses it too, the best scheduler we know
misses it on that traffic. A TTFT target also gets the floor (``bench.peers.floor``), where the
phase has one: a TTFT p90 that no router can go below on that traffic; where the floor is past
the target, the target is out of every router's reach.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from infergate.bench.peers.routers import PEER_ROUTERS
from infergate.bench.peers.run import RunOutcome
from infergate.bench.peers.summary import Summary

SUBJECT: Final = "infergate-default"
ORACLE: Final = "oracle"
TTFT_VS_PEER: Final = 0.7
TTFT_VS_ORACLE: Final = 1.2
OUTPUT_VS_PEER: Final = 1.0
CRITICAL_GOODPUT_VS_PEER: Final = 1.5
MAX_SPREAD: Final = 0.10
# workloads whose summaries are the critical requests' (bench.peers.workloads: those with objectives)
CRITICAL_WORKLOADS: Final = frozenset({"priority-mix"})

Pick = Callable[[list[RunOutcome], str], RunOutcome | None]


def spread(values: Sequence[float]) -> float:
    """max / min - 1 of positive values (NaN for none, or a minimum that is not positive)."""
    return max(values) / min(values) - 1 if values and min(values) > 0 else math.nan


@dataclass(frozen=True)
class Check:
    """One target on one workload/phase: the subject's per-repeat ratios and the oracle's against
    the same reference (empty where a figure is missing)."""

    name: str  # e.g. "TTFT p90 / best peer"
    limit: float
    at_most: bool  # True: the ratio must be <= limit; False: >= limit
    ratios: tuple[float, ...]
    oracle_ratios: tuple[float, ...] = ()  # the oracle's, against the same reference (none for the oracle itself)
    floor_ratios: tuple[float, ...] = ()  # the phase's TTFT p90 floor (bench.peers.floor), against the same reference

    @property
    def value(self) -> float:
        return statistics.median(self.ratios) if self.ratios else math.nan

    @property
    def measured(self) -> bool:
        return bool(self.ratios)

    @property
    def met(self) -> bool:
        if not self.ratios:
            return False
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    @property
    def spread(self) -> float:
        """max / min - 1 over the repeats (NaN with fewer than two)."""
        return spread(self.ratios) if len(self.ratios) > 1 else math.nan

    @property
    def miss(self) -> float:
        """How far the median is on the wrong side of the limit, as a fraction of the limit (0 if met)."""
        if self.met or not self.ratios:
            return 0.0
        return self.value / self.limit - 1 if self.at_most else 1 - self.value / self.limit

    @property
    def out_of_reach(self) -> bool:
        """The floor under every router's figure is past the limit (an at-most target with a floor)."""
        return bool(self.floor_ratios) and self.at_most and statistics.median(self.floor_ratios) > self.limit

    def why(self) -> str:
        """For a missed target: whether any router could meet it (the floor), where the oracle stands
        against the same reference, and whether the repeats straddle the limit."""
        if self.met or not self.ratios:
            return ""
        floor = statistics.median(self.floor_ratios) if self.floor_ratios else math.nan
        if self.out_of_reach:
            return (f"out of every router's reach: the floor under any router's figure on this traffic is at "
                    f"{self._x(floor)}")
        parts = []
        if self.oracle_ratios:
            oracle = statistics.median(self.oracle_ratios)
            parts.append(f"the oracle reaches {self._x(oracle)}: this is the scheduler's to win" if self.oracle_meets
                         else f"the oracle itself is at {self._x(oracle)}: it misses {self.limit:g}x too")
        if self.floor_ratios:
            parts.append(f"the floor is at {self._x(floor)}")
        if self.straddles:
            parts.append(f"the repeats straddle {self.limit:g}x ({min(self.ratios):.3f}-{max(self.ratios):.3f}x): "
                         "met or missed depending on the seed")
        return "; ".join(parts)

    @property
    def straddles(self) -> bool:
        """With repeats, some meet the limit and some miss it."""
        if len(self.ratios) < 2:
            return False
        return min(self.ratios) <= self.limit <= max(self.ratios)

    @property
    def oracle_meets(self) -> bool:
        """The oracle's median ratio against the same reference meets the limit (False without one)."""
        if not self.oracle_ratios:
            return False
        oracle = statistics.median(self.oracle_ratios)
        return oracle <= self.limit if self.at_most else oracle >= self.limit

    def _x(self, ratio: float) -> str:
        """``ratio`` as "0.97x"; with a third decimal where two would print the limit itself."""
        text = f"{ratio:.2f}"
        return f"{ratio:.3f}x" if text == f"{self.limit:.2f}" and ratio != self.limit else f"{text}x"

    def cell(self) -> str:
        if not self.ratios:
            return "-"
        text = self._x(self.value)
        if len(self.ratios) > 1:
            text += f" ({min(self.ratios):.2f}-{max(self.ratios):.2f}x)"
        if self.met:
            return f"{text} met"
        return f"{text} **missed by {self.miss:.1%}**" if self.miss < 0.01 else f"{text} **missed by {self.miss:.0%}**"


@dataclass(frozen=True)
class PhaseTargets:
    key: str  # "<workload>/<phase>"
    checks: tuple[Check, ...]
    failed: int  # the subject's failed requests, summed over the repeats
    repeats_with_numbers: int

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)


def best_peer(runs: list[RunOutcome], metric: str = "ttft_p90") -> RunOutcome | None:
    """The peer (sglang-router, vllm-router) with the lowest ``metric`` (highest for throughput)."""
    peers = [r for r in runs if r.router in PEER_ROUTERS and r.summary is not None
             and math.isfinite(getattr(r.summary, metric))]
    if not peers:
        return None
    higher = metric in ("output_tokens_per_s", "goodput")
    return (max if higher else min)(peers, key=lambda r: getattr(r.summary, metric))


def oracle(runs: list[RunOutcome], _metric: str = "") -> RunOutcome | None:
    """The oracle's run, if it has numbers (a reference like :func:`best_peer`)."""
    return _ran(runs, ORACLE)


def _ran(runs: list[RunOutcome], router: str) -> RunOutcome | None:
    return next((r for r in runs if r.router == router and r.summary is not None), None)


def per_repeat_ratios(by_seed: Mapping[int, list[RunOutcome]], router: str, metric: str,
                      reference: Pick = best_peer) -> dict[int, float]:
    """seed -> the router's ``metric`` over the reference's (the best peer by default, else e.g.
    the oracle) IN THAT REPEAT; a repeat without the router's or the reference's figure is left
    out (the caller says so)."""
    out: dict[int, float] = {}
    for seed, runs in by_seed.items():
        run, ref = _ran(runs, router), reference(runs, metric)
        if run is None or ref is None or run.summary is None or ref.summary is None:
            continue
        a, b = getattr(run.summary, metric), getattr(ref.summary, metric)
        if b and math.isfinite(a) and math.isfinite(b):
            out[seed] = a / b
    return out


def floor_ratios(by_seed: Mapping[int, list[RunOutcome]], floors: Mapping[int, float], metric: str,
                 reference: Pick) -> tuple[float, ...]:
    """Per repeat with a floor, its floor over the reference's ``metric`` in that repeat."""
    out = []
    for seed, runs in by_seed.items():
        ref, floor = reference(runs, metric), floors.get(seed)
        value = getattr(ref.summary, metric) if ref is not None and ref.summary is not None else math.nan
        if floor is not None and value and math.isfinite(value):
            out.append(floor / value)
    return tuple(out)


def _check(name: str, limit: float, at_most: bool, by_seed: Mapping[int, list[RunOutcome]], metric: str,
           reference: Pick, subject: str, floors: Mapping[int, float] | None = None) -> Check:
    bound = () if reference is oracle else tuple(per_repeat_ratios(by_seed, ORACLE, metric, reference).values())
    return Check(name, limit, at_most, tuple(per_repeat_ratios(by_seed, subject, metric, reference).values()), bound,
                 floor_ratios(by_seed, floors, metric, reference) if floors else ())


def evaluate(key: str, by_seed: Mapping[int, list[RunOutcome]], subject: str = SUBJECT,
             ttft_p90_floors: Mapping[int, float] | None = None) -> PhaseTargets:
    """The targets on one workload/phase; ``by_seed``: each repeat's runs by its seed;
    ``ttft_p90_floors``: the phase's floor under any router's TTFT p90, by seed (``bench.peers.floor``)."""
    workload, _, phase = key.partition("/")
    checks = [_check("TTFT p90 / best peer", TTFT_VS_PEER, True, by_seed, "ttft_p90", best_peer, subject,
                     ttft_p90_floors),
              _check("TTFT p90 / oracle", TTFT_VS_ORACLE, True, by_seed, "ttft_p90", oracle, subject, ttft_p90_floors)]
    if phase == "closed":
        checks.append(_check("out tok/s / best peer", OUTPUT_VS_PEER, False, by_seed, "output_tokens_per_s",
                             best_peer, subject))
    if workload in CRITICAL_WORKLOADS:
        checks.append(_check("critical goodput / best peer", CRITICAL_GOODPUT_VS_PEER, False, by_seed, "goodput",
                             best_peer, subject))
    summaries: list[Summary] = [run.summary for runs in by_seed.values() if (run := _ran(runs, subject)) and run.summary]
    return PhaseTargets(key, tuple(checks), sum(s.failed for s in summaries), len(summaries))


COLUMNS: Final = ("TTFT p90 / best peer", "TTFT p90 / oracle", "out tok/s / best peer", "critical goodput / best peer")


def markdown(phases: Sequence[PhaseTargets], repeats: int, subject: str = SUBJECT) -> list[str]:
    """The report's targets section (nothing when the subject has no numbers anywhere)."""
    phases = [p for p in phases if p.repeats_with_numbers]
    if not phases:
        return []
    limits = (f"<= {TTFT_VS_PEER:g}x", f"<= {TTFT_VS_ORACLE:g}x", f">= {OUTPUT_VS_PEER:g}x, closed loops",
              f">= {CRITICAL_GOODPUT_VS_PEER:g}x, {', '.join(sorted(CRITICAL_WORKLOADS))}")
    header = ["workload/phase", *(f"{c} ({lim})" for c, lim in zip(COLUMNS, limits, strict=True)), "failed",
              "why a target is missed"]
    lines = [f"## Issue 16's targets for {subject}", "",
             "Ratios against the same run's best peer (sglang-router, vllm-router) and oracle"
             + ("; with repeats, the median of the per-repeat ratios (min-max), each repeat against its own "
                "references" if repeats > 1 else "")
             + ". \"Missed by\": how far the ratio is past the target, as a fraction of the target. \"Why\" gives "
             "the oracle's ratio against the same reference (where the oracle misses a target too, the best "
             "scheduler we know misses it on that traffic) and, for TTFT, the floor's: the TTFT p90 that no router "
             "can go below on that traffic, from its arrivals and the simulator's step-time model "
             "(`infergate.bench.peers.floor`). Where the floor is past the target, no router can meet it."
             + (" Where some repeats meet a target and others miss it, \"why\" says the repeats straddle it."
                if repeats > 1 else ""), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for p in phases:
        cells = [p.key]
        for name in COLUMNS:
            check = p.check(name)
            cells.append(check.cell() if check else "")
        cells.append(f"**{p.failed}**" if p.failed else "0")
        whys = [f"{c.name}: {c.why()}" for c in p.checks if c.why()]
        cells.append("; ".join(whys))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *_tally(phases, repeats), ""]
    return lines


def _tally(phases: Sequence[PhaseTargets], repeats: int) -> list[str]:
    lines = []
    for name in COLUMNS:
        checks = [c for p in phases if (c := p.check(name)) is not None and c.measured]
        if not checks:
            continue
        met = sum(c.met for c in checks)
        missed = [c for c in checks if not c.met]
        oracle_misses = sum(1 for c in missed if c.oracle_ratios and not c.oracle_meets)
        unreachable = sum(1 for c in missed if c.out_of_reach)
        lines.append(f"- {name}: met on {met} of {len(checks)}"
                     + (f"; of the {len(missed)} missed, the oracle misses {oracle_misses} too" if missed else "")
                     + (f", and {unreachable} {'is' if unreachable == 1 else 'are'} out of every router's reach "
                        "(the floor)" if unreachable else ""))
    failed = [p.key for p in phases if p.failed]
    lines.append("- failed requests: " + (", ".join(f"{p.key} {p.failed}" for p in phases if p.failed)
                                          if failed else "none"))
    if repeats > 1:
        spreads = [(p.key, c) for p in phases for c in p.checks if math.isfinite(c.spread)]
        within = sum(1 for _, c in spreads if c.spread <= MAX_SPREAD)
        worst = sorted(spreads, key=lambda item: item[1].spread, reverse=True)[:3]
        lines.append(f"- spread of the per-repeat ratios (max/min - 1) within {MAX_SPREAD:.0%}: {within} of "
                     f"{len(spreads)}" + ("; widest: " + ", ".join(f"{key} {c.name} {c.spread:.0%}"
                                                                  for key, c in worst) if worst else ""))
    return lines
