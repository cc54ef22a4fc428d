"""Scheduling quality without a proxy: scheduling presets compared on the same shared-prefix traffic.

    python -m infergate.epp.bench_quality --profiles default,round-robin,prefix-load \\
        --duration 30 --rate 8 --groups 32 --system-tokens 4000 --sim-profile llama-3.1-8b-a100-40gb

For each profile: fresh simulator replicas (cold caches), a static pool file, ``build_epp``
(scraper + Director), then a Poisson shared-prefix workload (``infergate.bench.workload``)
where this process plays the proxy: it asks the Director, streams the completion from the
chosen replica and reports the response back. Prints time to first token p50/p90 and
end-to-end p90 per profile. Quick to iterate on scheduling; the end-to-end benchmark with
Envoy is ``infergate bench scheduling``.

Prefix-aware routing only pays when the distinct shared prefixes do not fit in every
replica's KV cache (``groups x system-tokens`` > the replica's capacity); otherwise every
replica caches every prefix and round-robin balances load best.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from infergate.bench.stats import percentile
from infergate.bench.workload import PlannedRequest, WorkloadSpec, plan
from infergate.epp.build import build_epp
from infergate.epp.contract import InferenceRequest, Rejection
from infergate.epp.options import EPPOptions
from infergate.epp.sources.static import StaticFileSource
from infergate.sim import SimCluster
from infergate.sim.config import SimConfig
from infergate.util.net import free_port, random_loopback_block


async def run_profile(profile: str, planned: list[PlannedRequest], *, replicas: int, sim_profile: str,
                      seed: int, workdir: Path) -> dict[str, Any]:
    port = free_port()
    addresses = random_loopback_block(replicas, port)
    async with SimCluster(SimConfig(model="m", seed=seed, profile=sim_profile), addresses, port) as cluster:
        pool_file = workdir / f"pool-{profile}.yaml"
        pool_file.write_text(yaml.safe_dump({
            "pool": {"name": "bench", "targetPorts": [port]},
            "endpoints": [{"name": r.name, "address": r.host} for r in cluster.replicas],
        }))
        parts = build_epp(EPPOptions(pool_name="bench", seed=seed, scheduling_preset=profile))
        source = asyncio.create_task(StaticFileSource(pool_file).run(parts.datastore))
        await parts.scraper.start()
        director = parts.director
        ttfts: list[float] = []
        e2es: list[float] = []
        failed = 0
        try:
            for _ in range(100):  # first scrapes, bounded
                if all(parts.store.fresh(e) is not None for e in cluster.endpoints):
                    break
                await asyncio.sleep(0.05)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                loop = asyncio.get_running_loop()
                start = loop.time()

                async def one(i: int, p: PlannedRequest) -> None:
                    nonlocal failed
                    await asyncio.sleep(max(0.0, start + p.at - loop.time()))
                    rid = f"r{i}"
                    body = {"model": "m", "prompt": p.prompt, "max_tokens": p.max_tokens, "stream": True,
                            "ignore_eos": True}
                    t0 = time.monotonic()
                    try:
                        decision = await director.handle_request(
                            InferenceRequest(rid, {}, body, "m", None, p.prompt, streaming=True))
                    except Rejection:
                        failed += 1
                        return
                    first: float | None = None
                    completed = False
                    try:
                        async with http.post(f"http://{decision.endpoint}/v1/completions", json=body) as r:
                            director.on_response_headers(rid, r.status, dict(r.headers))
                            async for chunk in r.content.iter_any():
                                if first is None:
                                    first = time.monotonic() - t0
                                director.on_response_body(rid, chunk, False)
                            director.on_response_body(rid, b"", True)
                            completed = r.status == 200
                    except aiohttp.ClientError:
                        pass
                    finally:
                        director.on_request_done(rid, completed=completed)
                    if not completed or first is None:
                        failed += 1
                        return
                    ttfts.append(first)
                    e2es.append(time.monotonic() - t0)

                await asyncio.gather(*(one(i, p) for i, p in enumerate(planned)))
        finally:
            await parts.scraper.stop()
            source.cancel()
            await asyncio.gather(source, return_exceptions=True)
    return {"requests": len(planned), "failed": failed, "ttft_p50": round(percentile(ttfts, 50), 4),
            "ttft_p90": round(percentile(ttfts, 90), 4), "e2e_p90": round(percentile(e2es, 90), 4)}


async def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    spec = WorkloadSpec(groups=args.groups, system_prompt_tokens=args.system_tokens, question_tokens=args.question_tokens,
                        max_tokens=args.max_tokens, rate=args.rate, seed=args.seed)
    planned = plan(spec, args.duration)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="epp-quality-") as tmp:
        for profile in args.profiles.split(","):
            results[profile] = await run_profile(profile, planned, replicas=args.replicas,
                                                 sim_profile=args.sim_profile, seed=args.seed, workdir=Path(tmp))
            if not args.json:
                print(f"{profile}: {results[profile]}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infergate.epp.bench_quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default="default,round-robin", help="comma-separated scheduling presets")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of arrivals")
    parser.add_argument("--rate", type=float, default=8.0, help="requests per second (Poisson)")
    parser.add_argument("--groups", type=int, default=32, help="distinct shared system prompts")
    parser.add_argument("--system-tokens", type=int, default=4000)
    parser.add_argument("--question-tokens", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--sim-profile", default="llama-3.1-8b-a100-40gb", help="simulator latency profile")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
