"""The gateway's added latency (issue 12): time to first token through Envoy + the EPP against
the same request sent straight to the model server, at 10% and 70% of the EPP's capacity.

    infergate bench added-latency [--duration 20] [--out bench/results/added-latency]

What runs (all real processes on loopback):

* ``infergate sim`` replicas (4 by default, one process) with **zero model time** (every
  latency-profile term and the per-request overhead set to 0, no jitter): a simulator's time to
  first token is then only its HTTP and engine bookkeeping, the same on both paths, so the
  difference between the paths is the gateway's.
* One ``infergate epp`` (default profile, 50 ms scrapes, static pool file) and Envoy (one
  worker) configured by the production translators, as ``bench.topology`` does for the
  scheduling benchmark: what a user runs.
* The same Envoy with a second listener that is a copy of the gateway's without the ext_proc
  filter ("Envoy alone": same route, same pool cluster, its fallback load balancing instead of
  the EPP's pick), to split the added latency into Envoy's share and the EPP's.
* A load generator with its own minimal HTTP/1.1 client over asyncio streams (keep-alive
  connections, chunked SSE): httpx costs about a millisecond of CPU per streamed request, too
  much next to what is measured. Time to first token = from writing the request to reading the
  first event with text.

The phases:

1. **Capacity.** Closed loop through the gateway (``--capacity-concurrency`` users for
   ``--capacity-seconds``); the EPP's CPU time over it (every process of its process group,
   from ``/proc``), minus its idle CPU (scrapes) measured just before over the same wall time,
   divided by the requests: CPU per request, and its inverse, the requests per second one EPP
   process serves when it has a core to itself (its capacity). The closed loop's own throughput
   is reported too: what the whole machine (client, Envoy, EPP, simulator) reaches.
2. **Per load level** (10% and 70% of that capacity): one Poisson request sequence (seeded,
   ``--prompt-tokens`` prompts: 16 shared system prompts and a unique question, ``max_tokens``
   2, streamed) cut in blocks of ``--block-seconds``. Each block runs through the gateway, then
   the same requests at the same times through Envoy alone, then straight to the replica the
   EPP picked for each (``x-inference-pod``); blocks alternate until ``--duration`` seconds of
   each path. A short warm-up of every path first is not counted.
3. **Added latency** = a TTFT quantile through the gateway minus the same quantile straight to
   the model server (p50, p90, p99), against the targets (p50 <= 1 ms, p99 <= 3 ms). The
   quantiles of the per-request differences (paired by request) are reported too; they carry
   the noise of both paths and overstate the tail. Envoy alone minus direct is Envoy's share,
   the gateway minus Envoy alone the EPP's (its three ext_proc round trips).

``--pin-epp`` runs the EPP alone on the last CPU and every other process of the benchmark on
the others (``taskset``), as if the EPP had its own pod: on a small machine the 70% level
otherwise measures the EPP competing with Envoy, the simulator and the client for a core.

The report states the machine: CPUs, load averages, busy share and each process's cores per
level, the rate actually achieved and how late the client sent (an open-loop client that
falls behind measures itself). Writes ``report.md``, ``results.json`` and ``added_latency.png``.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infergate.bench.scheduling import CpuSampler
from infergate.bench.stats import percentile
from infergate.bench.topology import (
    EnvoyProcess,
    EPPProcess,
    Lane,
    ManagedProcess,
    PortPool,
    SimReplicas,
    static_pool_file,
    workdir,
)
from infergate.dataplane.xds_translator import EXT_PROC_FILTER
from infergate.util.net import async_wait_for_port, random_loopback_block

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
TARGET_P50_S = 0.001
TARGET_P99_S = 0.003
QUANTILES = (50, 90, 99)
# every term of the simulator's step-time model and its per-request overhead: zero model time
ZERO_MODEL_TIME = ("step_base_s", "per_seq_s", "per_prefill_token_s", "per_context_token_s", "attention_s",
                   "lora_load_s", "request_overhead_s", "jitter")


@dataclass(frozen=True)
class AddedLatencyConfig:
    levels: tuple[float, ...] = (0.1, 0.7)  # fractions of the EPP's capacity
    duration: float = 20.0  # seconds of traffic per path and level
    block_seconds: float = 2.0
    warmup_seconds: float = 1.0
    replicas: int = 4
    prompt_tokens: int = 1000
    max_tokens: int = 2
    capacity_seconds: float = 6.0
    capacity_concurrency: int = 8
    idle_seconds: float = 2.0
    seed: int = 7
    pin_epp: bool = False  # the EPP alone on the last CPU, everything else on the others (taskset)
    envoy_bin: str | None = None


# -- analysis (pure) ---------------------------------------------------------------------------------


def quantiles_of(values: Sequence[float]) -> dict[str, float]:
    """p50, p90 and p99 (linear interpolation; NaN for none)."""
    return {f"p{q}": percentile(values, q) for q in QUANTILES}


@dataclass(frozen=True)
class AddedLatency:
    """TTFT quantiles of both paths over the requests that succeeded on both, and their difference."""

    pairs: int
    failed_gateway: int
    failed_direct: int
    gateway: dict[str, float]
    direct: dict[str, float]
    added: dict[str, float]  # gateway quantile - direct quantile
    paired: dict[str, float]  # quantiles of (gateway - direct) per request

    @property
    def meets_targets(self) -> bool:
        return self.added["p50"] <= TARGET_P50_S and self.added["p99"] <= TARGET_P99_S


def added_latency(gateway: Sequence[float | None], direct: Sequence[float | None]) -> AddedLatency:
    """``gateway[i]`` and ``direct[i]``: TTFT of request i on each path (None: it failed there)."""
    if len(gateway) != len(direct):
        raise ValueError(f"{len(gateway)} gateway results but {len(direct)} direct ones: not the same requests")
    pairs = [(g, d) for g, d in zip(gateway, direct, strict=True) if g is not None and d is not None]
    through = [g for g, _ in pairs]
    straight = [d for _, d in pairs]
    gq, dq = quantiles_of(through), quantiles_of(straight)
    return AddedLatency(
        pairs=len(pairs), failed_gateway=sum(g is None for g in gateway), failed_direct=sum(d is None for d in direct),
        gateway=gq, direct=dq, added={k: gq[k] - dq[k] for k in gq},
        paired=quantiles_of([g - d for g, d in pairs]))


@dataclass(frozen=True)
class Capacity:
    requests: int
    wall_s: float
    epp_cpu_s: float  # over the closed loop, idle subtracted
    epp_idle_cores: float

    @property
    def cpu_per_request_s(self) -> float:
        return self.epp_cpu_s / self.requests if self.requests else math.nan

    @property
    def requests_per_s(self) -> float:
        """What one EPP process serves with a core to itself: 1 / CPU per request."""
        per = self.cpu_per_request_s
        return 1.0 / per if per > 0 else math.nan

    @property
    def closed_loop_requests_per_s(self) -> float:
        return self.requests / self.wall_s if self.wall_s > 0 else math.nan


def epp_capacity(requests: int, wall_s: float, cpu_s: float, idle_cpu_s: float, idle_wall_s: float) -> Capacity:
    """The EPP's CPU over ``requests`` (``cpu_s`` in ``wall_s``) minus its idle rate over the same wall time."""
    idle_cores = idle_cpu_s / idle_wall_s if idle_wall_s > 0 else 0.0
    return Capacity(requests, wall_s, max(0.0, cpu_s - idle_cores * wall_s), idle_cores)


@dataclass(frozen=True)
class Planned:
    at: float  # seconds from the start of its block
    body: bytes


def poisson_plan(rate: float, duration: float, bodies: Sequence[bytes], rng: random.Random) -> list[Planned]:
    """Poisson arrivals at ``rate`` per second over ``duration`` seconds, each with a body drawn from ``bodies``."""
    planned: list[Planned] = []
    t = rng.expovariate(rate)
    while t < duration:
        planned.append(Planned(t, bodies[rng.randrange(len(bodies))]))
        t += rng.expovariate(rate)
    return planned


def cut_blocks(planned: Sequence[Planned], block_s: float) -> list[list[Planned]]:
    """Consecutive blocks of ``block_s`` seconds, each request's time from its block's start."""
    if not planned:
        return []
    count = int(planned[-1].at // block_s) + 1
    blocks: list[list[Planned]] = [[] for _ in range(count)]
    for p in planned:
        index = int(p.at // block_s)
        blocks[index].append(Planned(p.at - index * block_s, p.body))
    return blocks


def prompt_bodies(prompt_tokens: int, max_tokens: int, count: int, rng: random.Random) -> list[bytes]:
    """``count`` request bodies: 16 shared system prompts and a unique question (4 characters a token)."""
    words = ["alpha", "beta", "gamma", "delta", "kappa", "omega", "sigma", "theta"]
    systems = [" ".join(f"{rng.choice(words)}{g}" for _ in range(max(1, prompt_tokens * 4 // 7 - 8)))
               for g in range(16)]
    bodies = []
    for i in range(count):
        prompt = f"{systems[i % 16]} question {i}: {rng.random():.12f}?"
        bodies.append(json.dumps({"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "stream": True,
                                  "ignore_eos": True}).encode())
    return bodies


# -- the client --------------------------------------------------------------------------------------


@dataclass
class Timed:
    ttft: float | None = None
    pod: str | None = None
    status: int = 0
    lag: float = 0.0  # how late it was sent against its plan
    error: str | None = None


class _Connections:
    """Idle keep-alive connections per (host, port)."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def take(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        idle = self._idle.get((host, port))
        while idle:
            reader, writer = idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
        return await asyncio.open_connection(host, port)

    def give(self, host: str, port: int, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self._idle.setdefault((host, port), []).append(conn)

    def close(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
        self._idle.clear()


def _first_text(line: bytes) -> bool:
    """Whether an SSE ``data:`` line is a completion event with text."""
    if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
        return False
    try:
        event = json.loads(line[5:])
    except ValueError:
        return False
    choices = event.get("choices") if isinstance(event, dict) else None
    return isinstance(choices, list) and any(isinstance(c, dict) and c.get("text") for c in choices)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], started: float, result: Timed) -> None:
    """Read the (chunked or sized) body; the time of the first event with text into ``result``."""
    pending = b""

    def feed(data: bytes) -> None:
        nonlocal pending
        if result.ttft is not None:
            return
        pending += data
        *lines, pending = pending.split(b"\n")
        if any(_first_text(line) for line in lines):
            result.ttft = time.perf_counter() - started

    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return
            feed((await reader.readexactly(size + 2))[:-2])
    else:
        feed(await reader.readexactly(int(headers.get("content-length", "0"))))


async def send(connections: _Connections, host: str, port: int, body: bytes) -> Timed:
    """POST ``body`` to /v1/completions on ``host:port``; its time to first token."""
    result = Timed()
    request = (f"POST /v1/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    try:
        conn = await connections.take(host, port)
        reader, writer = conn
        started = time.perf_counter()
        writer.write(request)
        status_line = await reader.readuntil(b"\r\n")
        result.status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        result.pod = headers.get("x-inference-pod")
        await _read_body(reader, headers, started, result)
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            connections.give(host, port, conn)
        if result.status != 200:
            result.error, result.ttft = f"HTTP {result.status}", None
        elif result.ttft is None:
            result.error = "no token"
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


async def run_block(block: Sequence[Planned], target: Callable[[int], tuple[str, int]],
                    connections: _Connections) -> list[Timed]:
    """Send each planned request at its time (open loop) to ``target(i)``."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.01

    async def one(i: int, p: Planned) -> Timed:
        delay = start + p.at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lag = loop.time() - (start + p.at)
        host, port = target(i)
        timed = await send(connections, host, port, p.body)
        timed.lag = lag
        return timed

    results = await asyncio.gather(*(one(i, p) for i, p in enumerate(block)))
    remaining = start + (block[-1].at if block else 0.0) - loop.time()
    if remaining > 0:
        await asyncio.sleep(remaining)
    return list(results)


async def closed_loop(host: str, port: int, bodies: Sequence[bytes], users: int, seconds: float,
                      connections: _Connections) -> tuple[int, int, float]:
    """``users`` each sending the next request when the last one ends; (ok, failed, wall seconds)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    counts = [0, 0]

    async def user(u: int) -> None:
        i = u
        while loop.time() < end:
            timed = await send(connections, host, port, bodies[i % len(bodies)])
            counts[timed.ttft is None] += 1
            i += users

    started = loop.time()
    await asyncio.gather(*(user(u) for u in range(users)))
    return counts[0], counts[1], loop.time() - started


# -- the run -----------------------------------------------------------------------------------------


def add_envoy_only_listener(bootstrap: dict[str, Any], port: int) -> dict[str, Any]:
    """A copy of the bootstrap's first listener on ``port`` without the ext_proc filter."""
    listener = json.loads(json.dumps(bootstrap["static_resources"]["listeners"][0]))
    listener["name"] = f"envoy-only-{port}"
    listener["address"]["socket_address"]["port_value"] = port
    for chain in listener["filter_chains"]:
        for network_filter in chain["filters"]:
            hcm = network_filter["typed_config"]
            hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != EXT_PROC_FILTER]
            hcm["stat_prefix"] = f"envoy_only_{port}"
    bootstrap["static_resources"]["listeners"].append(listener)
    return bootstrap


def _group_ticks(pgid: int) -> int:
    """CPU ticks of every process in process group ``pgid`` (the process and what it started)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(parts[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
            total += int(parts[11]) + int(parts[12])
    return total


def _group_cpu_s(pgid: int) -> float:
    return _group_ticks(pgid) / os.sysconf("SC_CLK_TCK")


def _picked(done: Sequence[Timed], pods: dict[str, tuple[str, int]]) -> Callable[[int], tuple[str, int]]:
    """Request i straight to the replica the EPP picked for it (``x-inference-pod``; a request that
    failed through the gateway goes to the first replica)."""
    first = next(iter(pods.values()))
    return lambda i: pods.get(done[i].pod or "", first)


def pin_epp_apart(epp: ManagedProcess, others: Sequence[ManagedProcess], cpus: Sequence[int]) -> tuple[int, str]:
    """Start the EPP on the last of ``cpus`` and ``others`` on the rest (the caller moves itself
    there too): the EPP gets a core of its own, as in a deployment where it has its own pod."""
    if len(cpus) < 2:
        raise ValueError(f"--pin-epp needs at least 2 CPUs, this process may use {list(cpus)}")
    epp_cpu, rest = cpus[-1], ",".join(str(c) for c in cpus[:-1])
    epp.argv = ["taskset", "-c", str(epp_cpu), *epp.argv]  # taskset execs: the pid stays the command's
    for process in others:
        process.argv = ["taskset", "-c", rest, *process.argv]
    return epp_cpu, rest


@dataclass
class LevelRun:
    level: float
    target_rate: float
    requests: int
    gateway_rate: float  # achieved: requests / wall time of the gateway blocks
    direct_rate: float
    lag_p99_s: float  # how late the client sent, p99 over both paths
    cores: dict[str, float]  # per process over the level, and machine busy share
    added: AddedLatency  # gateway against direct
    envoy_only: AddedLatency  # Envoy without the ext_proc filter against direct
    epp_share: dict[str, float]  # gateway quantile - Envoy-alone quantile
    errors: dict[str, int] = field(default_factory=dict)


async def run_added_latency(config: AddedLatencyConfig, progress: Callable[[str], None] = lambda _: None,
                            work: Path | None = None) -> dict[str, Any]:
    work = work or workdir("infergate-added-latency-")
    rng = random.Random(config.seed)
    ports = PortPool()
    sim_port = ports()
    addresses = random_loopback_block(config.replicas, sim_port)
    zero = [arg for name in ZERO_MODEL_TIME for arg in ("--set", f"{name}=0")]
    sims = SimReplicas(addresses, sim_port, time_scale=1.0, model=MODEL, workdir=work,
                       extra=[*zero, "--mean-output-tokens", "0", "--seed", str(config.seed)])
    endpoints = [f"{a}:{sim_port}" for a in addresses]
    pool_file = static_pool_file(work / "pool.yaml", pool_name="pool", endpoints=endpoints)
    epp = EPPProcess(pool_file=pool_file, workdir=work, ports=ports, extra=["--seed", str(config.seed)])
    lane = Lane("latency", ports(), epp.grpc_port, tuple(endpoints), message_timeout_s=10.0)
    envoy = EnvoyProcess([lane], workdir=work, envoy_bin=config.envoy_bin, ports=ports)
    envoy_only = ("127.0.0.1", ports())
    envoy.bootstrap_path.write_text(json.dumps(add_envoy_only_listener(
        json.loads(envoy.bootstrap_path.read_text()), envoy_only[1]), indent=1))
    bodies = prompt_bodies(config.prompt_tokens, config.max_tokens, 512, rng)
    connections = _Connections()
    own_cpus = os.sched_getaffinity(0)
    if config.pin_epp:
        epp_cpu, rest = pin_epp_apart(epp.process, [sims.process, envoy.process], sorted(own_cpus))
        os.sched_setaffinity(0, {int(c) for c in rest.split(",")})  # the load generator
        progress(f"pinned: the EPP on CPU {epp_cpu}, Envoy, the simulator and the load generator on {rest}")
    load_start = os.getloadavg()
    levels: list[LevelRun] = []
    try:
        progress(f"starting {config.replicas} simulator replicas (zero model time), the EPP and Envoy")
        await sims.start()
        await epp.start()
        await envoy.start()
        await async_wait_for_port(*envoy_only, timeout=30)
        assert sims.process.process and epp.process.process and envoy.process.process
        pods = {f"sim-{i}": (address, sim_port) for i, address in enumerate(addresses)}
        pids = {"envoy": envoy.process.process.pid, "epp": epp.process.process.pid,
                "simulator": sims.process.process.pid}
        gateway = ("127.0.0.1", lane.listen_port)
        await closed_loop(*gateway, bodies, 4, 1.0, connections)  # warm caches and connections

        progress(f"capacity: the EPP idle for {config.idle_seconds:g}s, then a closed loop of "
                 f"{config.capacity_concurrency} users for {config.capacity_seconds:g}s")
        idle_before, t0 = _group_cpu_s(pids["epp"]), time.monotonic()
        await asyncio.sleep(config.idle_seconds)
        idle_cpu, idle_wall = _group_cpu_s(pids["epp"]) - idle_before, time.monotonic() - t0
        busy_before = _group_cpu_s(pids["epp"])
        ok, failed, wall = await closed_loop(*gateway, bodies, config.capacity_concurrency,
                                             config.capacity_seconds, connections)
        capacity = epp_capacity(ok + failed, wall, _group_cpu_s(pids["epp"]) - busy_before, idle_cpu, idle_wall)
        progress(f"capacity: {capacity.cpu_per_request_s * 1000:.3f} ms of EPP CPU per request -> "
                 f"{capacity.requests_per_s:,.0f} requests/s per EPP process; the closed loop reached "
                 f"{capacity.closed_loop_requests_per_s:,.0f}/s ({failed} failed)")

        for level in config.levels:
            rate = level * capacity.requests_per_s
            plan = poisson_plan(rate, config.duration, bodies, rng)
            blocks = cut_blocks(plan, config.block_seconds)
            progress(f"{level:.0%} of capacity: {rate:,.0f} requests/s, {len(plan)} requests per path in "
                     f"{len(blocks)} blocks of {config.block_seconds:g}s: gateway, Envoy alone, direct")
            warm = cut_blocks(poisson_plan(rate, config.warmup_seconds, bodies, rng), config.warmup_seconds)
            for block in warm:
                done = await run_block(block, lambda i: gateway, connections)
                await run_block(block, lambda i: envoy_only, connections)
                await run_block(block, _picked(done, pods), connections)
            sampler = CpuSampler(pids)
            through: list[Timed] = []
            alone: list[Timed] = []
            straight: list[Timed] = []
            walls = [0.0, 0.0]
            for block in blocks:
                started = time.monotonic()
                done = await run_block(block, lambda i: gateway, connections)
                walls[0] += time.monotonic() - started
                alone += await run_block(block, lambda i: envoy_only, connections)
                started = time.monotonic()
                direct = await run_block(block, _picked(done, pods), connections)
                walls[1] += time.monotonic() - started
                through += done
                straight += direct
            cpu = sampler.report()
            errors: dict[str, int] = {}
            for path, timed in (("gateway", through), ("Envoy alone", alone), ("direct", straight)):
                for t in timed:
                    if t.error:
                        key = f"{path}: {t.error[:80]}"
                        errors[key] = errors.get(key, 0) + 1
            added = added_latency([t.ttft for t in through], [t.ttft for t in straight])
            envoy_share = added_latency([t.ttft for t in alone], [t.ttft for t in straight])
            levels.append(LevelRun(
                level=level, target_rate=rate, requests=len(plan),
                gateway_rate=len(plan) / walls[0] if walls[0] else math.nan,
                direct_rate=len(plan) / walls[1] if walls[1] else math.nan,
                lag_p99_s=percentile([t.lag for t in through + straight], 99),
                cores={**cpu.per_process, "machine_busy": cpu.machine_busy}, added=added, envoy_only=envoy_share,
                epp_share={q: added.gateway[q] - envoy_share.gateway[q] for q in added.gateway}, errors=errors))
            progress(f"{level:.0%}: added p50 {added.added['p50'] * 1000:.2f} ms, p99 {added.added['p99'] * 1000:.2f} ms"
                     f" (gateway p50 {added.gateway['p50'] * 1000:.2f} / Envoy alone "
                     f"{envoy_share.gateway['p50'] * 1000:.2f} / direct {added.direct['p50'] * 1000:.2f} ms)")
    finally:
        connections.close()
        for process in (envoy, epp, sims):
            await process.stop()
        os.sched_setaffinity(0, own_cpus)
    return {
        "config": {k: v for k, v in asdict(config).items() if k != "envoy_bin"},
        "machine": {"cpus": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
                    "pinned": config.pin_epp},
        "capacity": {**asdict(capacity), "cpu_per_request_ms": capacity.cpu_per_request_s * 1000,
                     "requests_per_s": capacity.requests_per_s,
                     "closed_loop_requests_per_s": capacity.closed_loop_requests_per_s},
        "targets": {"p50_ms": TARGET_P50_S * 1000, "p99_ms": TARGET_P99_S * 1000},
        "levels": [{**asdict(run), "added": {**asdict(run.added), "meets_targets": run.added.meets_targets}}
                   for run in levels],
    }
