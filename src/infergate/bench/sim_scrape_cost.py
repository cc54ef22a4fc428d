"""What being watched costs the model servers: simulator CPU per scrape, whole page vs ``name[]``.

    python -m infergate.bench.sim_scrape_cost [--replicas 16] [--seconds 5] [--rounds 2]

Starts ``infergate sim`` replicas (one process, as the pool's model servers) and scrapes each
of them every 50 ms with the EPP's own scraper (``MetricsScraper``, in this process), once
asking for the whole page (as the EPP did before, and as upstream's EPP does) and once with
``name[]`` filters for the five series the EPP reads (today's default), alternating round by
round. Reports the simulator process's CPU per scrape and in cores, and the scrapes answered
per second (``bench/results/epp-cost/sim-scrape-cost.md`` and ``.json``). The simulators are
idle: this is the cost of being watched, before any request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from statistics import mean
from typing import Any

from infergate.bench.epp_cost import loopback_addresses
from infergate.epp.datastore import Datastore, PodInfo, PoolInfo
from infergate.epp.metrics_scraper import MetricsScraper, MetricsStore
from infergate.util.net import free_port

_HZ = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / _HZ


async def _measure(pid: int, addresses: list[str], port: int, name_filter: bool, seconds: float) -> dict[str, float]:
    datastore = Datastore()
    datastore.set_pool(PoolInfo("bench", selector=None, target_ports=(port,)))
    for i, address in enumerate(addresses):
        datastore.upsert_pod(PodInfo(f"sim-{i}", address))
    store = MetricsStore()
    answered = 0

    def count(_: str) -> None:
        nonlocal answered
        answered += 1

    store.subscribe(count)
    async with MetricsScraper(datastore, store, refresh_interval=0.05, name_filter=name_filter):
        await asyncio.sleep(1.0)  # connections open, every endpoint scraped
        start_cpu, start_answered, start = _cpu_seconds(pid), answered, time.monotonic()
        await asyncio.sleep(seconds)
        cpu, wall, scrapes = _cpu_seconds(pid) - start_cpu, time.monotonic() - start, answered - start_answered
    return {"name_filter": float(name_filter), "seconds": wall, "scrapes_per_s": scrapes / wall,
            "sim_cores": cpu / wall, "sim_ms_per_scrape": 1000 * cpu / scrapes if scrapes else 0.0}


async def run(replicas: int, seconds: float, rounds: int) -> list[dict[str, float]]:
    port = free_port()
    addresses = loopback_addresses(replicas, random.Random(11))
    # consecutive addresses from the first: the simulator's --replicas convention
    first = addresses[0]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "infergate", "sim", "--replicas", str(replicas), "--address", first, "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        if not line.startswith("ready"):
            raise RuntimeError(f"infergate sim did not start: {line!r}")
        served = [ep.rsplit(":", 1)[0] for ep in line.split()[1:]]
        rows = []
        for _ in range(rounds):
            for name_filter in (False, True):
                rows.append(await _measure(proc.pid, served, port, name_filter, seconds))
                print(f"  name[] {'on ' if name_filter else 'off'}: {rows[-1]['scrapes_per_s']:.0f} scrapes/s, "
                      f"simulator {rows[-1]['sim_cores']:.3f} cores, {rows[-1]['sim_ms_per_scrape']:.3f} ms per scrape",
                      flush=True)
        return rows
    finally:
        proc.terminate()
        await proc.wait()


def render(rows: list[dict[str, float]], replicas: int, load: tuple[float, float, float]) -> str:
    def side(on: bool) -> dict[str, float]:
        chosen = [r for r in rows if bool(r["name_filter"]) == on]
        return {k: mean(r[k] for r in chosen) for k in ("scrapes_per_s", "sim_cores", "sim_ms_per_scrape")}

    off, on = side(False), side(True)
    ratio = on["sim_ms_per_scrape"] / off["sim_ms_per_scrape"] if off["sim_ms_per_scrape"] else 0.0
    return "\n".join([
        "# What being watched costs the model servers (issue 12)", "",
        f"`python -m infergate.bench.sim_scrape_cost --replicas {replicas}`: {replicas} idle `infergate sim` replicas "
        "in one process, each scraped every 50 ms by the EPP's scraper, the whole page against `name[]` filters "
        f"(the five series the EPP reads), alternating. 2 CPUs, load average at the start {load[0]:.2f}, "
        f"{load[1]:.2f}, {load[2]:.2f}. The simulator renders its page per request as vLLM's prometheus_client "
        "exposition does, so its cost per scrape is the model server's.", "",
        "| scrape | scrapes answered per s | simulator cores | simulator ms per scrape |",
        "|---|---:|---:|---:|",
        f"| whole page (upstream's EPP, infergate before) | {off['scrapes_per_s']:,.0f} | {off['sim_cores']:.3f} "
        f"| {off['sim_ms_per_scrape']:.3f} |",
        f"| `name[]` (infergate's EPP) | {on['scrapes_per_s']:,.0f} | {on['sim_cores']:.3f} "
        f"| {on['sim_ms_per_scrape']:.3f} |", "",
        f"Per scrape the simulator spends **{ratio:.2f}x** with `name[]`.", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infergate.bench.sim_scrape_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/epp-cost"))
    args = parser.parse_args(argv)
    import uvloop

    load = os.getloadavg()
    rows = uvloop.run(run(args.replicas, args.seconds, args.rounds))
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"replicas": args.replicas, "load_average": load, "rows": rows}
    (args.out / "sim-scrape-cost.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "sim-scrape-cost.md").write_text(render(rows, args.replicas, load))
    print(f"wrote {args.out}/sim-scrape-cost.md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
