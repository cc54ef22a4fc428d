"""Two or more stored peer benchmark runs side by side: issue 16's ratios in each, and their spread.

Issue 16 asks that "two runs give ratios within 10% of each other". ``--repeats`` states that
spread inside one run; this compares separate runs (another day, another code revision, another
seed), each read back from the ``details.json`` that ``bench peers`` or ``bench peers-report``
wrote. Per workload/phase and per target (:data:`infergate.bench.peers.targets.COLUMNS`), each
run's ratio is computed against THAT run's own best peer and oracle, as the report does; the
spread is max/min - 1 over the runs. One more ratio is compared, the TTFT p90 of the turns sent
after the warm-up against the best peer's, since the whole-phase p90 of a closed loop sits on its
cold burst. Last, each router's own TTFT p90 across the runs (:attr:`Comparison.own`): a ratio of
two p90s moves when either does, and this says whose moved.

Runs compared must have been measured the same way except for the seed (the fields of
:data:`infergate.bench.peers.stored.SAME_MEASUREMENT`), with one repeat each (a run with repeats
states its own spread).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from infergate.bench.peers import targets
from infergate.bench.peers.floor import run_floors
from infergate.bench.peers.run import PeersResult, RunOutcome
from infergate.bench.peers.stored import StoredRunError, differences

STEADY: Final = "TTFT p90 after warm-up / best peer"
RATIOS: Final = (*targets.COLUMNS, STEADY)


@dataclass(frozen=True)
class Row:
    """One workload/phase and ratio (or, in :attr:`Comparison.own`, router): each run's value (NaN
    where that run has no figure)."""

    key: str
    measure: str  # the ratio's name, or in Comparison.own the router whose TTFT p90 the values are
    values: tuple[float, ...]

    @property
    def spread(self) -> float:
        """max/min - 1 over the runs; NaN unless every run has a figure."""
        if len(self.values) < 2 or not all(math.isfinite(v) for v in self.values):
            return math.nan
        return targets.spread(self.values)

    @property
    def within(self) -> bool:
        return math.isfinite(self.spread) and self.spread <= targets.MAX_SPREAD

    @property
    def spread_text(self) -> str:
        """The spread as a percentage, bold past the issue's 10%; "-" without one."""
        if not math.isfinite(self.spread):
            return "-"
        return f"{self.spread:.0%}" if self.within else f"**{self.spread:.0%}**"


@dataclass(frozen=True)
class Comparison:
    labels: tuple[str, ...]
    seeds: tuple[int, ...]
    rows: tuple[Row, ...]
    # each router's own whole-phase TTFT p90 (Row.measure is the router), for the routers every run measured
    own: tuple[Row, ...] = ()
    # per phase, the floor under any router's TTFT p90 in each run (bench.peers.floor; NaN where it has none)
    floors: tuple[Row, ...] = ()

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"runs": list(self.labels), "seeds": list(self.seeds), "max_spread": targets.MAX_SPREAD,
                               "phases": {}}
        for row in self.rows:
            out["phases"].setdefault(row.key, {})[row.measure] = {
                "values": [v if math.isfinite(v) else None for v in row.values],
                "spread": row.spread if math.isfinite(row.spread) else None}
        for row in self.own:
            out.setdefault("own_ttft_p90", {}).setdefault(row.key, {})[row.measure] = {
                "values": list(row.values), "spread": row.spread if math.isfinite(row.spread) else None}
        for row in self.floors:
            out.setdefault("ttft_p90_floor", {})[row.key] = [v if math.isfinite(v) else None for v in row.values]
        return out


def _steady(runs: list[RunOutcome], subject: str) -> float:
    ratios = targets.per_repeat_ratios({0: runs}, subject, "ttft_p90_steady")
    return ratios.get(0, math.nan)


def _own_ttft_p90(key: str, per_run: list[dict[str, list[RunOutcome]]]) -> list[Row]:
    """Each router's TTFT p90 on ``key`` in every run, for the routers with numbers in all of them."""
    figures = [{r.router: r.summary.ttft_p90 for r in keyed.get(key, ()) if r.summary is not None}
               for keyed in per_run]
    return [Row(key, router, tuple(f[router] for f in figures))
            for router in figures[0] if all(router in f for f in figures)]


def _floor(key: str, runs: list[RunOutcome], result: PeersResult) -> float:
    """The floor under any router's TTFT p90 on ``key`` in one run (NaN where the phase has none)."""
    seed = result.config.seed
    return run_floors(result.config, key, {seed: runs}).get(seed, math.nan)


def _check_comparable(named: Sequence[tuple[str, PeersResult]]) -> None:
    if len(named) < 2:
        raise StoredRunError("compare needs two runs at least")
    first_label, first = named[0]
    for label, result in named:
        if result.config.repeats != 1:
            raise StoredRunError(f"{label}: {result.config.repeats} repeats; compare runs of one repeat each "
                                 "(a run with repeats states its own spread in its report)")
        differ = differences(first.config, result.config, ignore=("seed",))
        if differ:
            raise StoredRunError(f"{label} was not measured as {first_label}: " + "; ".join(differ))


def compare(named: Sequence[tuple[str, PeersResult]], subject: str = targets.SUBJECT) -> Comparison:
    """Each workload/phase that every run measured the subject in, in the first run's order."""
    _check_comparable(named)
    per_run = [result.by_phase() for _, result in named]
    keys = [key for key in per_run[0] if all(
        any(r.router == subject and r.summary is not None for r in keyed.get(key, ())) for keyed in per_run)]
    rows: list[Row] = []
    own: list[Row] = []
    floors: list[Row] = []
    for key in keys:
        own += _own_ttft_p90(key, per_run)
        floors.append(Row(key, "floor", tuple(_floor(key, keyed[key], result)
                                              for keyed, (_, result) in zip(per_run, named, strict=True))))
        phases = [targets.evaluate(key, {0: keyed[key]}, subject) for keyed in per_run]
        for ratio in targets.COLUMNS:
            checks = [p.check(ratio) for p in phases]
            if all(c is None for c in checks):
                continue
            rows.append(Row(key, ratio, tuple(c.value if c is not None else math.nan for c in checks)))
        rows.append(Row(key, STEADY, tuple(_steady(keyed[key], subject) for keyed in per_run)))
    return Comparison(tuple(label for label, _ in named), tuple(r.config.seed for _, r in named), tuple(rows),
                      tuple(own), tuple(floors))


def _x(value: float) -> str:
    return f"{value:.2f}x" if math.isfinite(value) else "-"


def markdown(comparison: Comparison, subject: str = targets.SUBJECT) -> str:
    c = comparison
    lines = [f"# {subject} in {len(c.labels)} peer benchmark runs", "",
             "Each ratio is against the same run's best peer (sglang-router, vllm-router) or oracle; the spread is "
             f"max/min - 1 over the runs (issue 16 asks for at most {targets.MAX_SPREAD:.0%}).", ""]
    lines += [f"- {label}: seed {seed}" for label, seed in zip(c.labels, c.seeds, strict=True)]
    header = ["workload/phase", "ratio", *c.labels, "spread"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in c.rows:
        lines.append("| " + " | ".join([row.key, row.measure, *(_x(v) for v in row.values), row.spread_text]) + " |")
    lines += ["", "Within the spread, per ratio:"]
    for ratio in RATIOS:
        measured = [r for r in c.rows if r.measure == ratio and math.isfinite(r.spread)]
        if not measured:
            continue
        widest = sorted((r for r in measured if not r.within), key=lambda r: r.spread, reverse=True)[:3]
        lines.append(f"- {ratio}: {sum(r.within for r in measured)} of {len(measured)}"
                     + ("; widest: " + ", ".join(f"{r.key} {r.spread:.0%}" for r in widest) if widest else ""))
    measured = [r for r in c.rows if math.isfinite(r.spread)]
    lines.append(f"- all: {sum(r.within for r in measured)} of {len(measured)}")
    if c.own:
        lines += _own_markdown(c)
    return "\n".join(lines) + "\n"


def _own_markdown(c: Comparison) -> list[str]:
    routers = list(dict.fromkeys(row.measure for row in c.own))
    lines = ["", "## Each router's own TTFT p90", "",
             "Whole-phase TTFT p90 (model seconds) per run, and its spread: a ratio above moves when either of its "
             "two p90s does. The last column is the floor no router's p90 can go below on that run's traffic "
             "(`infergate.bench.peers.floor`; \"-\" where the phase has none).", "",
             "| workload/phase | " + " | ".join(routers) + " | floor |",
             "|" + "---|" * (len(routers) + 2)]
    floors = {row.key: row for row in c.floors}
    by_key: dict[str, dict[str, Row]] = {}
    for figure in c.own:
        by_key.setdefault(figure.key, {})[figure.measure] = figure
    for key, figures in by_key.items():
        cells = []
        for router in routers:
            own = figures.get(router)
            if own is None:
                cells.append("-")
                continue
            cells.append(" / ".join(f"{v:.3f}" for v in own.values) + f" ({own.spread_text})")
        floor = floors.get(key)
        cells.append(" / ".join(f"{v:.3f}" if math.isfinite(v) else "-" for v in floor.values) if floor else "-")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "Within the spread, per router:"]
    for router in routers:
        measured = [r for r in c.own if r.measure == router and math.isfinite(r.spread)]
        lines.append(f"- {router}: {sum(r.within for r in measured)} of {len(measured)}")
    return lines
