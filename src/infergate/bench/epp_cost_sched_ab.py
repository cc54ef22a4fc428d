"""Scheduling over 256 endpoints: this tree against other revisions, interleaved in one run.

    python -m infergate.bench.epp_cost_sched_ab --rev d724b6c --rev fee06e1 [--rounds 15]
                                                [--requests 600] [--out bench/results/epp-cost]

The scheduling part of :mod:`infergate.bench.epp_cost` (``measure_scheduling``:
``Scheduler.schedule`` + PreRequest, default profile, 3,000-token prompts, 256 endpoints with
realistic metrics, CPU time per call) for each ``--rev`` (its ``src`` tree, by ``git
archive``, measured with that tree's own ``measure_scheduling``) and for this tree, twice: as
``epp_cost`` measures it (the candidates' metrics are all the scheduler sees) and with each
endpoint's scrape fed to the inflight-load producer first, as the Director's scrape hook does
in the EPP (``this tree, scrapes fed``). Every measurement is a fresh process under the
caller's niceness; the order of the sides rotates every round, so that all of them see the
same machine. Writes ``sched-ab.json`` and ``sched-ab.md`` under ``--out``: per side the
median over rounds of the mean, p50 and p99 per call, and the spread (least and most) of
the means.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from statistics import median
from typing import Any

from infergate.bench import epp_cost
from infergate.bench.topology import workdir

THIS_TREE = "this tree"
FED = "this tree, scrapes fed"


def _child(requests: int, fed: bool) -> dict[str, float]:
    """One measurement with the ``infergate`` on ``sys.path`` (run as a script over a tree)."""
    if fed:
        return epp_cost.measure_scheduling(256, requests, random.Random(7), feed_scrapes=True)
    return epp_cost.measure_scheduling(256, requests, random.Random(7))


def _measure(source: Path | None, requests: int, fed: bool) -> dict[str, float]:
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    command = [sys.executable, __file__, "--child", "--requests", str(requests), *(["--fed"] if fed else [])]
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def measure(revs: list[str], rounds: int, requests: int) -> dict[str, list[dict[str, float]]]:
    here = Path(epp_cost.__file__).resolve().parents[2]  # this tree's src
    sides: list[tuple[str, Path | None, bool]] = [
        (rev, epp_cost.baseline_sources(rev, workdir(f"infergate-sched-ab-{rev}-")), False) for rev in revs]
    sides += [(THIS_TREE, here, False), (FED, here, True)]
    rows: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in sides}
    for n in range(rounds):
        for k in range(len(sides)):
            name, source, fed = sides[(k + n) % len(sides)]
            row = {**_measure(source, requests, fed), "round": n, "load_average_1m": os.getloadavg()[0]}
            rows[name].append(row)
            print(f"round {n} {name}: {row['mean_ms']:.3f} ms mean", flush=True)
    return rows


def summarise(rows: dict[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, rs in rows.items():
        means = [r["mean_ms"] for r in rs]
        out.append({"side": name, "rounds": len(rs), "mean_ms": median(means), "least_mean_ms": min(means),
                    "most_mean_ms": max(means), "p50_ms": median(r["p50_ms"] for r in rs),
                    "p99_ms": median(r["p99_ms"] for r in rs)})
    return out


def render(revs: list[str], summary: list[dict[str, Any]], loads: tuple[float, float], rounds: int,
           requests: int) -> str:
    reference = summary[0]["mean_ms"]
    lines = ["# Scheduling over 256 endpoints: this tree against " + ", ".join(revs), "",
             f"`python -m infergate.bench.epp_cost_sched_ab {' '.join('--rev ' + r for r in revs)} --rounds {rounds} "
             f"--requests {requests}`: `Scheduler.schedule` + PreRequest, default profile, 3,000-token prompts, "
             f"256 endpoints, {requests} requests per measurement, CPU time per call (process time: waiting for "
             f"a core does not count); {rounds} rounds, each side a fresh process per round, the order rotated "
             f"every round. {os.cpu_count()} CPUs shared with other jobs: load average (1 min) {loads[0]:.2f} to "
             f"{loads[1]:.2f} during the run; a loaded core also slows CPU time (shared caches), so compare the "
             "sides of this run, not runs.", "",
             f"| side | mean ms (median of rounds) | least - most mean | p50 ms | p99 ms | mean vs {summary[0]['side']} |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in summary:
        lines.append(f"| {row['side']} | {row['mean_ms']:.3f} | {row['least_mean_ms']:.3f} - "
                     f"{row['most_mean_ms']:.3f} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} | "
                     f"{row['mean_ms'] / reference:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infergate.bench.epp_cost_sched_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", action="append", default=[], help="a git revision to compare with (repeatable)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=600, help="scheduled requests per measurement")
    parser.add_argument("--out", type=Path, default=Path("bench/results/epp-cost"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.requests, args.fed)), flush=True)
        return 0
    rows = measure(args.rev, args.rounds, args.requests)
    loads = [r["load_average_1m"] for rs in rows.values() for r in rs]
    summary = summarise(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"revisions": args.rev, "rounds": args.rounds, "requests": args.requests, "rows": rows,
              "summary": summary}
    (args.out / "sched-ab.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "sched-ab.md").write_text(render(args.rev, summary, (min(loads), max(loads)), args.rounds,
                                                 args.requests))
    print(f"wrote {args.out}/sched-ab.md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
