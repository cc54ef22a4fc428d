"""The EPP's idle scrape cost, this tree against another revision, interleaved in one run.

    python -m infergate.bench.epp_cost_idle_ab --baseline-rev REV [--rounds 2] [--seconds 4]

The idle part of :mod:`infergate.bench.epp_cost` (one static metrics server answering for
4-256 endpoints, each scraped every 50 ms) for two EPPs: the revision ``REV`` (its ``src``
tree, by ``git archive``) and this tree, alternating round by round so that both see the same
machine. Writes ``idle-ab.json`` and ``idle-ab.md`` (CPU per scrape and cores at the full
rate, per pool size: the mean over rounds, and the ratio) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path
from statistics import mean
from typing import Any

from infergate.bench import epp_cost
from infergate.bench.topology import PortPool, workdir


async def measure(rev: str, rounds: int, seconds: float) -> dict[str, list[dict[str, float]]]:
    work = workdir("infergate-idle-ab-")
    ports = PortPool()
    server = epp_cost.MetricsServer(epp_cost.loopback_addresses(max(epp_cost.POOL_SIZES), random.Random(7)),
                                    ports(), work)
    await server.start()
    baseline = epp_cost.baseline_sources(rev, workdir("infergate-idle-ab-baseline-"))
    rows: dict[str, list[dict[str, float]]] = {"baseline": [], "after": []}
    try:
        for n in range(rounds):
            rows["baseline"] += await epp_cost.measure_idle(work, ports, server, seconds, baseline, f"baseline#{n}")
            rows["after"] += await epp_cost.measure_idle(work, ports, server, seconds, None, f"after#{n}")
    finally:
        await server.process.stop()
    return rows


def summarise(rows: dict[str, list[dict[str, float]]]) -> list[dict[str, float]]:
    out = []
    for count in epp_cost.POOL_SIZES:
        side = {name: [r for r in rs if r["endpoints"] == count] for name, rs in rows.items()}
        before = mean(r["epp_ms_per_scrape"] for r in side["baseline"])
        after = mean(r["epp_ms_per_scrape"] for r in side["after"])
        out.append({"endpoints": count, "baseline_ms_per_scrape": before, "after_ms_per_scrape": after,
                    "ratio": after / before if before else 0.0,
                    "baseline_cores_at_full_rate": before * count * 20 / 1000,
                    "after_cores_at_full_rate": after * count * 20 / 1000})
    return out


def render(rev: str, summary: list[dict[str, float]], load: tuple[float, float, float], rounds: int) -> str:
    lines = [f"# EPP idle scrape cost: this tree against {rev}", "",
             f"`python -m infergate.bench.epp_cost_idle_ab --baseline-rev {rev}`; {rounds} interleaved rounds; "
             f"{os.cpu_count()} CPUs, load average at the start {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} "
             "(a shared machine: the ratio is the result, absolute numbers move with the load). Cores at the "
             "full rate: CPU per scrape times endpoints x 20 scrapes/s.", "",
             "| endpoints | baseline ms/scrape | after ms/scrape | ratio | baseline cores at full rate | "
             "after cores at full rate |", "|---:|---:|---:|---:|---:|---:|"]
    for row in summary:
        lines.append(f"| {row['endpoints']:,} | {row['baseline_ms_per_scrape']:.3f} | {row['after_ms_per_scrape']:.3f} "
                     f"| {row['ratio']:.2f}x | {row['baseline_cores_at_full_rate']:.3f} "
                     f"| {row['after_cores_at_full_rate']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infergate.bench.epp_cost_idle_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-rev", required=True, help="the git revision to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per pool size")
    parser.add_argument("--out", type=Path, default=Path("bench/results/epp-cost"))
    args = parser.parse_args(argv)
    import uvloop

    load = os.getloadavg()
    rows = uvloop.run(measure(args.baseline_rev, args.rounds, args.seconds))
    summary = summarise(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"baseline_rev": args.baseline_rev, "load_average": load, "rows": rows,
                              "summary": summary}
    (args.out / "idle-ab.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "idle-ab.md").write_text(render(args.baseline_rev, summary, load, args.rounds))
    print(f"wrote {args.out}/idle-ab.md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
