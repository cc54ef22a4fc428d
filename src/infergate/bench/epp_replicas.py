"""The EPP's throughput ceiling, and one, two and three EPP replicas active-active on one pool
(issue 12, "Throughput ceiling").

    python -m infergate.bench.epp_replicas [--out bench/results/epp-replicas] [--replicas 1,2,3]
                                           [--rates 200,400,...] [--step-seconds 4] [--endpoints 8]
                                           [--pick-sharing both|off|on]

What runs (the pieces of ``infergate.bench.epp_cost``):

* **Pool.** One ``epp_cost_metrics_server`` process answers a static 26 KB vLLM ``/metrics``
  page for ``--endpoints`` loopback "pods" (every pod reports the same load, so the
  default profile's queue and KV-cache scorers tie and prefix affinity decides).
* **Replicas.** For each replica count N: N ``infergate epp`` processes on the same static
  pool, default profile, 50 ms scrapes, active-active (no leader election: every one
  serves). Each scrapes the pool itself and keeps its own prefix index and in-flight counts.
* **The client plays Envoy** with real ext_proc messages (request headers with
  ``protocol_config``, the buffered 3,000-token body, the response headers; response body
  NONE, the gateway's default) and spreads the streams over the N replicas round robin
  per stream, as Envoy does over the endpoints of the EPP's Service.
* **Load steps.** Open loop: at each offered rate (``--rates``) requests start on schedule
  for ``--step-seconds`` (at most ``--max-in-flight`` at once; a request that would exceed
  it is counted as not sent). Per step: requests/s sent and answered within the window,
  the EPP's decision latency (request body sent -> the EPP's reply naming the endpoint)
  p50/p99, the CPU of every EPP, of the metrics server and of the client. The knee is the
  last step that answered at least 90% of the offered rate with a median decision latency
  under 5 times the first step's (or under 5 ms if that is more); stepping stops two steps after
  the first one that does not follow.
* **Prefix affinity** (before the load steps, on fresh replicas): the same sequence of
  requests, one at a time, for every N. Two workloads: *system prompts* (16 shared 3,000-
  token system prompts + a unique question, the epp-cost prompts) and *sessions*
  (conversations of ``--turns`` requests each sharing their own prefix). Each pick is
  replayed against a simulated, unbounded prefix cache: a hit is a request sent to an
  endpoint that already served its prefix. The loss is the fraction of one EPP's hits
  that N replicas do not get (see docs/extproc.md for why this measure and not "the same
  pick as one EPP").
* **Scrape load.** Scrapes/s answered by the metrics server with the N replicas idle.
* **Pick sharing** (``--pick-sharing``, default ``both``): every replica count above 1 is
  measured without and with ``--pick-sharing-port`` / ``--pick-sharing-peers`` (each replica
  publishes its picks' prefix blocks to the others, ``infergate.epp.pick_sharing``): the
  affinity it wins back and what applying the other replicas' picks costs at the knee.

The client is a Python process on the same machine: on 2 cores it competes with the EPPs
for the CPU, so the aggregate ceiling of N replicas here is bounded by the machine, not by
N; the per-replica CPU is reported so that a reader can extrapolate to a bigger one.

Writes ``<out>/results.json``, ``<out>/report.md`` and ``<out>/achieved_vs_offered.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from infergate.api.headers import DESTINATION_ENDPOINT
from infergate.bench.epp_cost import (
    _HZ,
    _RESPONSE_HEADERS,
    CHARS_PER_TOKEN,
    MODE,
    MODEL,
    MetricsServer,
    _bodies,
    _epp_pid,
    _request_headers,
    _start_epp,
    _ticks,
    drive,
    loopback_addresses,
)
from infergate.bench.epp_replicas_analysis import (
    Step,
    affinity_loss,
    find_knee,
    percentile,
    session_sequence,
    simulated_cache_hits,
)
from infergate.bench.topology import EPPProcess, PortPool, workdir

DEFAULT_RATES = (200, 400, 600, 800, 1000, 1200, 1500, 1800, 2200, 2600)
PROMPT_TOKENS = 3000
SCRAPE_INTERVAL_S = 0.05


# ---- one exchange, the pick read back ------------------------------------------------------------

def picked_endpoint(reply: pb.ProcessingResponse) -> str:
    """The endpoint the EPP's reply to the request body names (``x-gateway-destination-endpoint``)."""
    for option in reply.request_body.response.header_mutation.set_headers:
        if option.header.key == DESTINATION_ENDPOINT:
            value: str = option.header.raw_value.decode() or option.header.value
            return value.split(",")[0]
    raise RuntimeError(f"the EPP's reply names no endpoint: {str(reply)[:300]}")


async def exchange(stub: pb_grpc.ExternalProcessorStub, request_id: int, body: bytes) -> tuple[float, str]:
    """One request as Envoy sends it (response body NONE): the EPP's decision latency in
    seconds (body sent -> reply) and the endpoint it picked."""
    call = stub.Process()
    await call.write(_request_headers(request_id, MODE.NONE))
    await call.read()
    started = time.perf_counter()
    await call.write(pb.ProcessingRequest(request_body=pb.HttpBody(body=body, end_of_stream=True)))
    reply = await call.read()
    decision = time.perf_counter() - started
    if reply.HasField("immediate_response"):
        raise RuntimeError(f"EPP rejected the request: {reply.immediate_response.body[:200]!r}")
    endpoint = picked_endpoint(reply)
    await call.write(_RESPONSE_HEADERS)
    await call.read()
    await call.done_writing()
    await call.code()
    return decision, endpoint


# ---- the load steps ------------------------------------------------------------------------------

def machine_busy_ticks() -> int:
    """Clock ticks every CPU of the machine spent busy (``/proc/stat``: all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq + steal


class CpuMeter:
    """CPU seconds of some processes, and of the whole machine (``machine``), between two readings."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start = self._read()
        self._t0 = time.monotonic()

    def _read(self) -> dict[str, int]:
        return {**{name: _ticks(pid) for name, pid in self.pids.items()}, "machine": machine_busy_ticks()}

    def cores(self) -> dict[str, float]:
        wall = time.monotonic() - self._t0
        now = self._read()
        return {name: (now[name] - self._start[name]) / _HZ / wall for name in now}


async def offered_step(stubs: Sequence[pb_grpc.ExternalProcessorStub], rate: float, seconds: float,
                       bodies: Sequence[bytes], first_id: int, max_in_flight: int) -> dict[str, Any]:
    """Start requests at ``rate`` for ``seconds`` (round robin over ``stubs`` per stream);
    what was sent, answered within the window, and the decision latencies."""
    loop = asyncio.get_running_loop()
    total = max(1, int(rate * seconds))
    latencies: list[float] = []
    in_flight = 0
    not_sent = errors = answered_in_window = 0
    start = loop.time()
    end = start + seconds
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int) -> None:
        nonlocal in_flight, errors, answered_in_window
        try:
            decision, _ = await exchange(stubs[i % len(stubs)], first_id + i, bodies[i % len(bodies)])
            if loop.time() <= end:
                answered_in_window += 1
                latencies.append(decision)
        except (grpc.aio.AioRpcError, RuntimeError):
            errors += 1
        finally:
            in_flight -= 1

    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if loop.time() > end:
            not_sent += total - i
            break
        if in_flight >= max_in_flight:
            not_sent += 1
            continue
        in_flight += 1
        tasks.append(loop.create_task(one(i)))
    await asyncio.sleep(max(0.0, end - loop.time()))
    if tasks:
        await asyncio.wait(tasks, timeout=10.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    sent = len(tasks)
    return {"offered": rate, "sent": sent / seconds,
            "achieved": answered_in_window / seconds, "requests_sent": sent, "not_sent": not_sent,
            "errors": errors, "answered_in_window": answered_in_window,
            "p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99),
            "mean_ms": 1000 * statistics.fmean(latencies) if latencies else 0.0}


async def load_steps(epps: Sequence[EPPProcess], server: MetricsServer, rates: Sequence[float], seconds: float,
                     bodies: Sequence[bytes], max_in_flight: int) -> list[dict[str, Any]]:
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{epp.grpc_port}") for epp in epps]
    stubs = [pb_grpc.ExternalProcessorStub(channel) for channel in channels]
    pids = {f"epp-{i}": _epp_pid(epp) for i, epp in enumerate(epps)}
    pids["metrics-server"] = server.pid
    pids["client"] = os.getpid()
    rows: list[dict[str, Any]] = []
    try:
        for n, rate in enumerate(rates):
            meter = CpuMeter(pids)
            row = await offered_step(stubs, rate, seconds, bodies, (n + 1) * 10**6, max_in_flight)
            cores = meter.cores()
            row["epp_cores"] = [cores[f"epp-{i}"] for i in range(len(epps))]
            row["metrics_server_cores"] = cores["metrics-server"]
            row["client_cores"] = cores["client"]
            row["machine_busy_cores"] = cores["machine"]
            # other helpers' jobs on a shared machine: what the machine did beyond this benchmark
            row["other_cores"] = max(0.0, cores["machine"] - sum(cores[name] for name in pids))
            rows.append(row)
            print(f"    offered {rate:>6.0f}/s: sent {row['sent']:>6.0f}/s, answered {row['achieved']:>6.0f}/s, "
                  f"decision p50 {row['p50_ms']:.2f} ms p99 {row['p99_ms']:.2f} ms, EPP cores "
                  + "/".join(f"{c:.2f}" for c in row["epp_cores"])
                  + f", client {row['client_cores']:.2f}, machine busy {row['machine_busy_cores']:.2f}",
                  flush=True)
            knee = find_knee([_step(r) for r in rows])
            if len(rows) - 1 - knee.index >= 2:  # two steps past the knee: saturated
                break
            await asyncio.sleep(0.5)  # let queued work drain between steps
    finally:
        for channel in channels:
            await channel.close()
    return rows


def _step(row: dict[str, Any]) -> Step:
    return Step(row["offered"], row["sent"], row["achieved"], row["p50_ms"], row["p99_ms"])


# ---- prefix affinity ------------------------------------------------------------------------------

def shared_prefix_bodies(sequence: Sequence[int], tokens: int, rng: random.Random) -> list[bytes]:
    """A body per request: the shared text of its prefix (most of ``tokens``) + a unique question."""
    words = ("the", "model", "server", "cache", "request", "token", "prefix", "gateway", "pool", "endpoint")
    size = tokens * CHARS_PER_TOKEN
    texts: dict[int, str] = {}
    bodies = []
    for i, prefix in enumerate(sequence):
        if prefix not in texts:
            text = f"Conversation {prefix} {rng.random()}: " + " ".join(rng.choice(words) for _ in range(size // 5))
            texts[prefix] = text[: max(0, size - 60)]
        prompt = texts[prefix] + f" Question {i}: what is {rng.randint(0, 10**9)}?"
        bodies.append(json.dumps({"model": MODEL, "prompt": prompt, "max_tokens": 16, "stream": True}).encode())
    return bodies


def affinity_workloads(requests: int, turns: int, seed: int) -> dict[str, tuple[list[int], list[bytes]]]:
    """The two sequences (the same for every replica count): ``system_prompts`` (16 shared
    prefixes, as the epp-cost benchmark) and ``sessions`` (``turns`` requests per prefix)."""
    rng = random.Random(seed)
    system = [rng.randrange(16) for _ in range(requests)]
    sessions = session_sequence(max(1, requests // turns), turns, rng)
    return {"system_prompts": (system, shared_prefix_bodies(system, PROMPT_TOKENS, rng)),
            "sessions": (sessions, shared_prefix_bodies(sessions, PROMPT_TOKENS, rng))}


async def picks_for(epps: Sequence[EPPProcess], bodies: Sequence[bytes], first_id: int,
                    gap_s: float = 0.0) -> list[str]:
    """One request at a time, round robin over the replicas per stream: the endpoint each got;
    ``gap_s`` between a reply and the next request (0: back to back)."""
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{epp.grpc_port}") for epp in epps]
    try:
        stubs = [pb_grpc.ExternalProcessorStub(channel) for channel in channels]
        picks = []
        for i, body in enumerate(bodies):
            if gap_s and i:
                await asyncio.sleep(gap_s)
            _, endpoint = await exchange(stubs[i % len(stubs)], first_id + i, body)
            picks.append(endpoint)
        return picks
    finally:
        for channel in channels:
            await channel.close()


# ---- the whole run ----------------------------------------------------------------------------------

def pick_sharing_flags(sharing_ports: Sequence[int]) -> list[list[str]]:
    """Each replica's ``infergate epp`` flags to share its picks with every other replica (all on
    127.0.0.1, each with its own port)."""
    return [["--pick-sharing-port", str(port), "--pick-sharing-peers",
             ",".join(f"127.0.0.1:{other}" for other in sharing_ports if other != port)] for port in sharing_ports]


async def measure_replicas(count: int, work: Path, ports: PortPool, server: MetricsServer,
                           args: argparse.Namespace, rng: random.Random,
                           workloads: dict[str, tuple[list[int], list[bytes]]],
                           pick_sharing: bool = False) -> dict[str, Any]:
    flags = pick_sharing_flags([ports() for _ in range(count)]) if pick_sharing else [[] for _ in range(count)]
    tag = "-sharing" if pick_sharing else ""
    epps = [await _start_epp(work, ports, server, args.endpoints, f"epp-{count}{tag}-{i}", extra=flags[i])
            for i in range(count)]
    try:
        await asyncio.sleep(2.0)  # every endpoint scraped by every replica, connections open
        meter = CpuMeter({"metrics-server": server.pid, **{f"epp-{i}": _epp_pid(e) for i, e in enumerate(epps)}})
        answered0, t0 = await server.answered(), time.monotonic()
        await asyncio.sleep(args.idle_seconds)
        scrapes = (await server.answered() - answered0) / (time.monotonic() - t0)
        idle = meter.cores()
        print(f"  {count} replica(s){' sharing picks' if pick_sharing else ''} idle: {scrapes:.0f} scrapes/s answered "
              f"({scrapes / args.endpoints:.1f} per model server), metrics server {idle['metrics-server']:.3f} cores",
              flush=True)
        picks: dict[str, list[str]] = {}
        for name, (_, bodies) in workloads.items():
            picks[name] = await picks_for(epps, bodies, 10**8 + len(picks) * 10**6)
        for epp in epps:  # warm up every replica's connection and code paths
            await drive(epp.grpc_port, _bodies(PROMPT_TOKENS, 50, rng), 4, 0, first_id=9 * 10**8)
        print(f"  {count} replica(s), load steps ({args.step_seconds:g} s each):", flush=True)
        bodies = _bodies(PROMPT_TOKENS, args.bodies, rng)
        steps = await load_steps(epps, server, args.rates, args.step_seconds, bodies, args.max_in_flight)
    finally:
        for epp in epps:
            await epp.stop()
    knee = find_knee([_step(r) for r in steps])
    return {"replicas": count, "pick_sharing": pick_sharing, "scrapes_per_s": scrapes, "scrapes_per_s_per_model_server": scrapes / args.endpoints,
            "scrapes_per_s_expected": count * args.endpoints / SCRAPE_INTERVAL_S,
            "idle_epp_cores": [idle[f"epp-{i}"] for i in range(count)],
            "idle_metrics_server_cores": idle["metrics-server"], "picks": picks, "steps": steps,
            "knee": asdict(knee)}


def analyse_affinity(results: list[dict[str, Any]],
                     workloads: dict[str, tuple[list[int], list[bytes]]]) -> dict[str, list[dict[str, Any]]]:
    """Per workload and run (replica count, pick sharing): the simulated cache hits and the loss
    against one EPP."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, (sequence, _) in workloads.items():
        rows = []
        single = None
        for result in results:
            affinity = simulated_cache_hits(sequence, result["picks"][name])
            if result["replicas"] == 1:
                single = affinity
            rows.append({"replicas": result["replicas"], "pick_sharing": result.get("pick_sharing", False),
                         "requests": affinity.requests, "hits": affinity.hits,
                         "possible": affinity.possible, "hit_rate": affinity.hit_rate,
                         "hit_rate_of_possible": affinity.hit_rate_of_possible, "copies_per_prefix": affinity.copies,
                         "loss_vs_one": affinity_loss(single, affinity) if single else None,
                         "prefixes": len(set(sequence))})
        out[name] = rows
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = workdir("infergate-epp-replicas-")
    ports = PortPool()
    rng = random.Random(args.seed)
    workloads = affinity_workloads(args.affinity_requests, args.turns, args.seed)
    server = MetricsServer(loopback_addresses(args.endpoints, rng), ports(), work)
    await server.start()
    results = []
    try:
        for count in args.replicas:
            for sharing in sharing_variants(count, args.pick_sharing):
                results.append(await measure_replicas(count, work, ports, server, args, rng, workloads, sharing))
    finally:
        await server.process.stop()
    return {"machine": {"cpus": os.cpu_count(), "load_average_start": args.load_start,
                        "load_average_end": os.getloadavg()},
            "settings": {"endpoints": args.endpoints, "prompt_tokens": PROMPT_TOKENS, "profile": "default",
                         "response_body": "NONE", "rates": list(args.rates), "step_seconds": args.step_seconds,
                         "max_in_flight": args.max_in_flight, "affinity_requests": args.affinity_requests,
                         "turns": args.turns, "scrape_interval_s": SCRAPE_INTERVAL_S, "seed": args.seed,
                         "pick_sharing": args.pick_sharing},
            "replicas": results, "affinity": analyse_affinity(results, workloads)}


def sharing_variants(count: int, mode: str) -> list[bool]:
    """Pick sharing off, on, or both, for ``count`` replicas (one replica has no one to share with)."""
    if count < 2:
        return [False]
    return {"off": [False], "on": [True], "both": [False, True]}[mode]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infergate.bench.epp_replicas", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/results/epp-replicas"))
    parser.add_argument("--replicas", type=_ints, default=[1, 2, 3], help="replica counts (default 1,2,3)")
    parser.add_argument("--rates", type=_ints, default=list(DEFAULT_RATES),
                        help="offered requests/s, increasing (default " + ",".join(map(str, DEFAULT_RATES)) + ")")
    parser.add_argument("--step-seconds", type=float, default=4.0, help="length of each load step (default 4)")
    parser.add_argument("--max-in-flight", type=int, default=512, help="streams open at once at most (default 512)")
    parser.add_argument("--endpoints", type=int, default=8, help="model servers in the pool (default 8)")
    parser.add_argument("--bodies", type=int, default=400, help="distinct request bodies the load cycles through")
    parser.add_argument("--affinity-requests", type=int, default=400, help="requests per affinity workload")
    parser.add_argument("--turns", type=int, default=4, help="requests per conversation in the sessions workload")
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--pick-sharing", choices=("both", "off", "on"), default="both",
                        help="measure 2+ replicas without and with pick sharing (both, the default), or one of them")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from results.json")
    args = parser.parse_args(argv)
    if sorted(args.rates) != list(args.rates) or not args.rates:
        parser.error("--rates must be increasing")
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        import uvloop

        args.load_start = os.getloadavg()
        results = uvloop.run(run(args))
        (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    # the report lives in its own module (matplotlib is imported only there)
    from infergate.bench.epp_replicas_report import write_report

    write_report(args.out)
    print(f"wrote {args.out}/report.md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
