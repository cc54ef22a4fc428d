"""Stored peer benchmark runs: a ``details.json`` read back, and several merged into one result.

A long benchmark is often run as several streams (``--workloads`` split among them, each with its
own ``--out``); :func:`merge` puts their results together so that one report covers every
workload. Only runs measured the same way merge: the same duration, time scale, replicas, seeds,
EPP flags, EPP replicas and closed-loop rating (a stream may measure other workloads, phases or routers). ``details.json`` holds no per-request TTFTs, so a merged report has no
plots of its own (``infergate bench peers-report`` copies the streams' PNGs).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from infergate.bench.peers.run import PHASES, RATES_UNTIL_DRAINED, PeersConfig, PeersResult, RunOutcome
from infergate.bench.peers.summary import Summary

# what two runs must share to be one benchmark (the selections, workloads, phases and routers, may differ)
SAME_MEASUREMENT: Final = ("duration", "time_scale", "replicas", "seed", "epp_args", "repeats",
                           "epp_replicas", "epp_pick_sharing", "declare_slow_speed_factor", "closed_loop_rates")


class StoredRunError(ValueError):
    """A details.json that cannot be read back, or runs that were not measured the same way."""


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _summary(data: Mapping[str, Any]) -> Summary:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Summary):
        if f.name not in data:
            if f.default is dataclasses.MISSING:
                raise StoredRunError(f"summary: missing {f.name!r}")
            continue
        raw = data[f.name]
        values[f.name] = int(raw) if f.type in ("int", int) else _nan(raw)
    return Summary(**values)


def from_details(data: Mapping[str, Any], source: str = "details.json") -> PeersResult:
    """The :class:`PeersResult` that wrote ``data`` (:func:`infergate.bench.peers.report.details`),
    without the per-request TTFTs."""
    try:
        raw = dict(data["config"])
        names = {f.name for f in dataclasses.fields(PeersConfig)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise StoredRunError(f"{source}: config: unknown field(s) {', '.join(unknown)}")
        for name in ("workloads", "routers", "phases", "epp_args"):
            if name in raw:
                raw[name] = tuple(raw[name])
        raw.setdefault("closed_loop_rates", RATES_UNTIL_DRAINED)  # stored before the field: rated that way
        config = PeersConfig(**raw)
        runs = []
        for i, run in enumerate(data["runs"]):
            summary = run.get("summary")
            runs.append(RunOutcome(
                workload=run["workload"], phase=run["phase"], router=run["router"],
                summary=_summary(summary) if summary is not None else None,
                not_found=dict(run.get("not_found") or {}), calls=dict(run.get("calls") or {}),
                log_404_lines=int(run.get("log_404_lines") or 0),
                replicas_per_group=_nan(run.get("replicas_per_group")),
                load_shares=dict(run.get("load_shares") or {}), queue_imbalance=_nan(run.get("queue_imbalance")),
                error=run.get("error"), seed=run.get("seed")))
            if not isinstance(runs[-1].workload, str) or not isinstance(runs[-1].router, str):
                raise StoredRunError(f"{source}: runs[{i}]: workload and router must be strings")
        return PeersResult(config, runs, dict(data.get("skipped") or {}), dict(data.get("workloads") or {}))
    except StoredRunError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise StoredRunError(f"{source}: not a peer benchmark's details.json ({type(exc).__name__}: {exc})") from None


def load(directory: Path) -> PeersResult:
    """The run stored in ``directory/details.json``."""
    path = directory / "details.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise StoredRunError(f"{path}: not found (a directory `infergate bench peers --out` wrote)") from None
    except json.JSONDecodeError as exc:
        raise StoredRunError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise StoredRunError(f"{path}: not a JSON object")
    return from_details(data, str(path))


def differences(first: PeersConfig, other: PeersConfig, ignore: Sequence[str] = ()) -> list[str]:
    """How ``other`` was measured differently from ``first`` (:data:`SAME_MEASUREMENT`, less
    ``ignore``), each as "name first vs other"; empty when the same."""
    return [f"{name} {getattr(first, name)!r} vs {getattr(other, name)!r}" for name in SAME_MEASUREMENT
            if name not in ignore and getattr(other, name) != getattr(first, name)]


def merge(results: Sequence[PeersResult]) -> PeersResult:
    """One result holding every run of ``results``, which must have been measured the same way
    (:data:`SAME_MEASUREMENT`); a workload/phase/router/seed measured twice is refused, except
    a run that failed to run (no numbers, e.g. a peer that did not start), which a later run of
    the same key replaces."""
    if not results:
        raise StoredRunError("nothing to merge")
    first = results[0].config
    for other in results[1:]:
        differ = differences(first, other.config)
        if differ:
            raise StoredRunError("not measured the same way: " + "; ".join(differ))
    seen: dict[tuple[str, str, str, int], int] = {}  # key -> index in runs
    runs: list[RunOutcome] = []
    for result in results:
        for run in result.runs:
            key = (run.workload, run.phase, run.router, run.seed if run.seed is not None else result.config.seed)
            if key in seen:
                if runs[seen[key]].summary is None and run.summary is not None:  # a failed start, run again
                    runs[seen[key]] = run
                    continue
                raise StoredRunError(f"{run.workload}/{run.phase} {run.router} (seed {key[3]}) is in more than one "
                                     "of the runs")
            seen[key] = len(runs)
            runs.append(run)

    def union(name: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v for r in results for v in getattr(r.config, name)))

    phases = union("phases")
    config = dataclasses.replace(first, workloads=union("workloads"), routers=union("routers"),
                                 phases=tuple(p for p in PHASES if p in phases) + tuple(p for p in phases if p not in PHASES))
    skipped: dict[str, str] = {}
    descriptions: dict[str, str] = {}
    for result in results:
        skipped.update(result.skipped)
        descriptions.update(result.descriptions)
    return PeersResult(config, runs, skipped, descriptions)
