"""Micro-benchmark: time to schedule one request (candidates -> endpoint, plus PreRequest).

    python -m infergate.epp.bench_scheduler --endpoints 64 --requests 5000 --preset default [--json]

Candidates carry realistic metrics (random queues, KV use, LoRA lists), fed first as scrapes to
the inflight-load producers as the Director's scrape hook does; prompts share a few
long system prompts (so the prefix indexer fills up and matches) plus a short question, as
in the scheduling benchmark. Prints mean / p50 / p99 / max per request in microseconds, for
the whole Director path (``--director``: admission, candidate building, accounting) or the
scheduler alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from typing import Any

from infergate.epp.contract import InferenceRequest
from infergate.epp.datastore import Datastore, Endpoint, PodInfo, PoolInfo
from infergate.epp.director import EppDirector
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.scheduling.config import PRESETS, load_config_file, load_preset
from infergate.epp.scheduling.framework import Candidate, Scheduler, SchedulingRequest
from infergate.epp.scheduling.plugins.inflight import InflightLoadProducer


def _metrics(rng: random.Random) -> EndpointMetrics:
    return EndpointMetrics(
        waiting_queue=rng.randint(0, 12), kv_cache_usage=rng.random(), running=rng.randint(0, 64),
        active_models=frozenset({f"lora-{rng.randint(0, 9)}"}), max_active_models=4, update_time=time.monotonic(),
    )


def _prompts(rng: random.Random, count: int, groups: int = 8) -> list[str]:
    systems = [f"System prompt {g}: " + " ".join(f"word{rng.randint(0, 10_000)}" for _ in range(300))
               for g in range(groups)]
    return [rng.choice(systems) + f" Question {i}: what is {rng.randint(0, 10**6)}?" for i in range(count)]


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "mean_us": statistics.fmean(ordered) * 1e6,
        "p50_us": ordered[len(ordered) // 2] * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
        "max_us": ordered[-1] * 1e6,
    }


def bench_scheduler(scheduler: Scheduler, endpoints: int, requests: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    candidates = [Candidate(Endpoint(f"pod-{i}", f"10.0.{i // 250}.{i % 250 + 1}", 8000), _metrics(rng))
                  for i in range(endpoints)]
    for plugin in scheduler.plugins.values():  # each endpoint's scrape, as the Director's scrape hook feeds it
        if isinstance(plugin, InflightLoadProducer):
            for c in candidates:
                if c.metrics is not None:
                    plugin.scraped(c.hostport, c.metrics)
    prompts = _prompts(rng, requests)
    samples: list[float] = []
    clock = time.perf_counter
    for i, prompt in enumerate(prompts):
        request = SchedulingRequest(f"r{i}", "m", prompt)
        started = clock()
        result, state = scheduler.schedule(request, candidates)
        scheduler.pre_request(state, request, result)
        samples.append(clock() - started)
    return _summary(samples)


async def bench_director(scheduler: Scheduler, endpoints: int, requests: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    ds = Datastore()
    ds.set_pool(PoolInfo("bench", selector=None, target_ports=(8000,)))
    ds.replace_pods(PodInfo(f"pod-{i}", f"10.0.{i // 250}.{i % 250 + 1}") for i in range(endpoints))
    store = MetricsStore()
    for e in ds.endpoints():
        store.update(e.hostport, _metrics(rng))
    director = EppDirector(ds, scheduler, store)
    prompts = _prompts(rng, requests)
    samples: list[float] = []
    clock = time.perf_counter
    for i, prompt in enumerate(prompts):
        request = InferenceRequest(f"r{i}", {}, {"model": "m", "prompt": prompt}, "m", None, prompt)
        started = clock()
        await director.handle_request(request)
        samples.append(clock() - started)
        director.on_request_done(f"r{i}", completed=True)
    return _summary(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infergate.epp.bench_scheduler", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, default=64, help="candidate endpoints (default 64)")
    parser.add_argument("--requests", type=int, default=5000, help="requests to schedule (default 5000)")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS), help="scheduling preset")
    parser.add_argument("--config-file", help="an EndpointPickerConfig file instead of a preset")
    parser.add_argument("--director", action="store_true", help="time the whole Director path")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    scheduler = (load_config_file(args.config_file, seed=args.seed) if args.config_file
                 else load_preset(args.preset, seed=args.seed))
    if args.director:
        result: dict[str, Any] = asyncio.run(bench_director(scheduler, args.endpoints, args.requests, args.seed))
    else:
        result = bench_scheduler(scheduler, args.endpoints, args.requests, args.seed)
    result = {"endpoints": args.endpoints, "requests": args.requests,
              "config": args.config_file or args.preset, "path": "director" if args.director else "scheduler",
              **{k: round(v, 1) for k, v in result.items()}}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['path']} {result['config']}: {args.requests} requests over {args.endpoints} endpoints: "
              f"mean {result['mean_us']} us, p50 {result['p50_us']} us, p99 {result['p99_us']} us, "
              f"max {result['max_us']} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
