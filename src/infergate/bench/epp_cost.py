"""The EPP's cost at production scale (issue 12): CPU per request against prompt length,
idle scrape cost against pool size, scheduling time over 256 endpoints, and the effect of
10,000 InferenceObjectives + 1,000 InferenceModels in the datastore.

    python -m infergate.bench.epp_cost [--out bench/results/epp-cost] [--label after]
                                       [--requests 400] [--quick]

What runs:

* **Pool.** One ``epp_cost_metrics_server`` process listens on up to 256 loopback
  addresses (one per "pod") and serves a realistic 26 KB vLLM ``/metrics`` page on each,
  over keep-alive HTTP/1.1. No simulator replicas: on a 2-core machine 256 of them would
  cost more than the EPP being measured. The server's own CPU and the scrapes it answered
  are reported, but they are the cost of this static server, not of a model server.
* **CPU per request.** An ``infergate epp`` subprocess (default profile, 50 ms scrapes, 4
  endpoints) is driven by a gRPC client playing Envoy with real ext_proc messages: request
  headers (with ``protocol_config``), the buffered body, the response headers, 8 concurrent
  streams. Twice: with the gateway's default Envoy configuration (request body BUFFERED,
  response body NONE: the SSE response streams to the client without passing through the
  EPP; 3 messages each way), and with the response body STREAMED to the EPP in ``--chunks``
  chunks (the last one carries ``usage``; for token-usage metrics; 3 + chunks each way). Prompts of 200, 1,000, 3,000, 8,000 and
  16,000 tokens (4 characters per token; 16 shared system prompts + a unique question, so
  the prefix index fills and matches). The EPP's CPU time (``/proc/<pid>/stat``) over the
  requests, minus its idle CPU (scrapes) measured for 3 s right before, over the same wall
  time, divided by the requests.
* **The transport's floor.** ``epp_cost_grpc_floor``: a grpcio asyncio ExternalProcessor
  that answers each message with a canned reply (no parsing, scheduling or metrics),
  driven the same way: what one ext_proc stream costs in this process model.
* **The EPP's own work** (in process): the same exchanges (response body NONE) fed to the
  ext_proc handler and the Director without gRPC, CPU time per request: what the EPP's
  code costs on top of the transport, measured with much less noise than the above.
* **Idle scrape cost.** One EPP per pool size (4 / 16 / 64 / 256 endpoints, 50 ms), its
  CPU over ``--idle-seconds`` with no requests, plus the scrapes answered per second.
* **Scheduling over 256 endpoints** (in process): ``Scheduler.schedule`` + PreRequest
  with the default profile, 3,000-token prompts, realistic metrics: time per request.
* **Objectives and models** (in process): the Director's CPU per request (body already
  parsed: admission, scheduling, accounting) on a GA pool with 1 and with 10,000
  InferenceObjectives, and on a preview pool with 1 and with 1,000 InferenceModels (every
  request names the same objective / model).

The baseline: ``--baseline-rev 55bf8ad`` (``make bench`` passes it) extracts the sources of
that revision (the EPP before the speed work of issue 12) with ``git archive`` and measures
its EPP in the same run, interleaved with the current one (same bodies, alternating order);
its in-process measurements run this file as a script over those sources.

Writes ``<out>/<label>.json`` (and ``<out>/baseline.json`` with ``--baseline-rev``); with
``--label after`` (the default) also ``report.md``, ``cpu_per_request.png`` and
``idle_scrape.png``, as ratios against ``<out>/baseline.json`` when it exists.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from envoy.config.core.v3 import base_pb2 as core_pb
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from infergate.api.headers import REQUEST_ID
from infergate.bench.topology import EPPProcess, ManagedProcess, PortPool, static_pool_file, workdir

MODE = processing_mode_pb2.ProcessingMode
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
PROMPT_TOKENS = (200, 1000, 3000, 8000, 16000)
# the flow-control A/B's scrapes: every endpoint once per this many requests (a 4-endpoint pool at
# 80 requests/s with the default 50 ms refresh); both arms handle them
SCRAPE_EVERY_REQUESTS = 4
POOL_SIZES = (4, 16, 64, 256)
CHARS_PER_TOKEN = 4
BASELINE_COMMIT = "55bf8ad"


# ---- processes ---------------------------------------------------------------------------

def _ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


_HZ = os.sysconf("SC_CLK_TCK")


def loopback_addresses(count: int, rng: random.Random) -> list[str]:
    """``count`` addresses 127.A.B.1-250, 127.A.B+1.1-250, ... (one per pod)."""
    a, b = rng.randint(20, 250), rng.randint(0, 200)
    return [f"127.{a}.{b + i // 250}.{i % 250 + 1}" for i in range(count)]


class MetricsServer:
    def __init__(self, addresses: Sequence[str], port: int, work: Path) -> None:
        argv = [sys.executable, "-m", "infergate.bench.epp_cost_metrics_server", "--port", str(port)]
        for address in addresses:
            argv += ["--address", address]
        self.port = port
        self.addresses = list(addresses)
        self.process = ManagedProcess(argv, name="metrics-server", log_path=work / "metrics-server.log")

    async def start(self) -> None:
        await self.process.start()
        await self.process.read_ready_line("ready", 30.0)

    @property
    def pid(self) -> int:
        assert self.process.process is not None
        return self.process.process.pid

    async def answered(self) -> int:
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://{self.addresses[0]}:{self.port}/stats") as response:
            return int((await response.json())["requests"])


async def _start_epp(work: Path, ports: PortPool, server: MetricsServer, count: int, name: str,
                     source: Path | None = None, extra: Sequence[str] = ()) -> EPPProcess:
    """``infergate epp`` over the first ``count`` endpoints; from the sources at ``source`` if given;
    ``extra``: more ``infergate epp`` flags."""
    endpoints = [f"{a}:{server.port}" for a in server.addresses[:count]]
    pool = static_pool_file(work / f"{name}.yaml", pool_name="pool", endpoints=endpoints)
    epp = EPPProcess(pool_file=pool, workdir=work, ports=ports, name=name, extra=("--v", "0", *extra))
    if source is not None:
        epp.process.env = {**os.environ, "PYTHONPATH": str(source)}
    await epp.start()
    return epp


def _epp_pid(epp: EPPProcess) -> int:
    assert epp.process.process is not None
    return epp.process.process.pid


# ---- the client playing Envoy ------------------------------------------------------------------

def _request_headers(i: int, response_body_mode: int = MODE.STREAMED) -> pb.ProcessingRequest:
    values = {":method": "POST", ":path": "/v1/completions", ":authority": "gateway", ":scheme": "http",
              "content-type": "application/json", "user-agent": "bench", REQUEST_ID: f"req-{i}",
              "accept": "*/*", "x-forwarded-proto": "http"}
    return pb.ProcessingRequest(
        request_headers=pb.HttpHeaders(headers=core_pb.HeaderMap(
            headers=[core_pb.HeaderValue(key=k, raw_value=v.encode()) for k, v in values.items()])),
        protocol_config=pb.ProtocolConfiguration(request_body_mode=MODE.BUFFERED,
                                                 response_body_mode=response_body_mode),
    )


_RESPONSE_HEADERS = pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=core_pb.HeaderMap(headers=[
    core_pb.HeaderValue(key=":status", raw_value=b"200"),
    core_pb.HeaderValue(key="content-type", raw_value=b"text/event-stream")])))


def _response_chunks(count: int) -> list[pb.ProcessingRequest]:
    chunks = []
    for c in range(count):
        last = c == count - 1
        data = b'data: {"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":" tok"}]}\n\n'
        if last:
            data += (b'data: {"id":"cmpl-1","choices":[],"usage":{"prompt_tokens":3000,"completion_tokens":'
                     + str(count).encode() + b',"total_tokens":3016}}\n\ndata: [DONE]\n\n')
        chunks.append(pb.ProcessingRequest(response_body=pb.HttpBody(body=data, end_of_stream=last)))
    return chunks


def prompts(tokens: int, count: int, rng: random.Random, systems: int = 16) -> list[str]:
    """``count`` prompts of about ``tokens`` tokens: a shared system prompt (most of it) + a question."""
    words = ("the", "model", "server", "cache", "request", "token", "prefix", "gateway", "pool", "endpoint")
    size = tokens * CHARS_PER_TOKEN
    shared = []
    for s in range(systems):
        text = f"System {s}: " + " ".join(rng.choice(words) for _ in range(size // 5))
        shared.append(text[: max(0, size - 60)])
    return [rng.choice(shared) + f" Question {i}: what is {rng.randint(0, 10**9)}?" for i in range(count)]


async def _one(stub: pb_grpc.ExternalProcessorStub, i: int, body: bytes,
               chunks: list[pb.ProcessingRequest]) -> None:
    call = stub.Process()
    await call.write(_request_headers(i, MODE.STREAMED if chunks else MODE.NONE))
    await call.read()
    await call.write(pb.ProcessingRequest(request_body=pb.HttpBody(body=body, end_of_stream=True)))
    reply = await call.read()
    if reply.WhichOneof("response") is None:  # flow control holds it: the proxy's timeout override first
        reply = await call.read()
    if reply.HasField("immediate_response"):
        raise RuntimeError(f"EPP rejected the request: {reply.immediate_response.body[:200]!r}")
    await call.write(_RESPONSE_HEADERS)
    await call.read()
    for chunk in chunks:
        await call.write(chunk)
        await call.read()
    await call.done_writing()
    await call.code()


async def drive(port: int, bodies: list[bytes], concurrency: int, chunks: int, first_id: int = 0) -> float:
    """Send every body as one ext_proc exchange; the wall time."""
    response = _response_chunks(chunks)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ExternalProcessorStub(channel)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(bodies)):
            queue.put_nowait(i)

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                await _one(stub, first_id + i, bodies[i], response)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.monotonic() - started


def _bodies(tokens: int, count: int, rng: random.Random) -> list[bytes]:
    return [json.dumps({"model": MODEL, "prompt": p, "max_tokens": 16, "stream": True,
                        "stream_options": {"include_usage": True}}).encode()
            for p in prompts(tokens, count, rng)]


async def idle_cores(pid: int, seconds: float) -> float:
    start, t0 = _ticks(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (_ticks(pid) - start) / _HZ / (time.monotonic() - t0)


async def _cpu_per_request(epp: EPPProcess, idle: float, bodies: list[bytes], concurrency: int, chunks: int,
                           first_id: int) -> dict[str, float]:
    pid = _epp_pid(epp)
    before = _ticks(pid)
    wall = await drive(epp.grpc_port, bodies, concurrency, chunks, first_id=first_id)
    cpu = (_ticks(pid) - before) / _HZ
    net = max(0.0, cpu - idle * wall)
    return {"requests": len(bodies), "wall_s": wall, "idle_cores": idle,
            "cpu_ms_per_request": 1000 * cpu / len(bodies),
            "cpu_ms_per_request_net_of_idle": 1000 * net / len(bodies)}


async def measure_per_request(epps: dict[str, EPPProcess], requests: int, concurrency: int, chunks: int,
                              rng: random.Random) -> dict[str, list[dict[str, float]]]:
    """Per side (``after``, ``baseline``), the CPU per request for each prompt length; the
    sides take turns on the same bodies, in alternating order, so that the machine's load
    weighs on both alike."""
    idle: dict[str, float] = {}
    for side, epp in epps.items():
        await drive(epp.grpc_port, _bodies(1000, 100, rng), concurrency, chunks, first_id=10**8)  # warm up
        idle[side] = await idle_cores(_epp_pid(epp), 2.0)
    rows: dict[str, list[dict[str, float]]] = {side: [] for side in epps}
    sides = list(epps)
    for n, tokens in enumerate(PROMPT_TOKENS):
        bodies = _bodies(tokens, requests, rng)
        for side in sides if n % 2 == 0 else reversed(sides):
            row = await _cpu_per_request(epps[side], idle[side], bodies, concurrency, chunks, n * 10**6)
            rows[side].append({"prompt_tokens": tokens, "body_bytes": statistics.fmean(len(b) for b in bodies),
                               **row})
        print(f"  {tokens:>6} tokens: " + ", ".join(
            f"{side} {rows[side][-1]['cpu_ms_per_request_net_of_idle']:.3f}" for side in sides) + " ms/request",
            flush=True)
    return rows


async def measure_grpc_floor(work: Path, ports: PortPool, requests: int, concurrency: int, chunks: int,
                             rng: random.Random) -> list[dict[str, Any]]:
    """CPU per request of a canned ext_proc server (same library and loop, no work): the floor."""
    port = ports()
    floor = ManagedProcess([sys.executable, "-m", "infergate.bench.epp_cost_grpc_floor", "--port", str(port)],
                           name="grpc-floor", log_path=work / "grpc-floor.log")
    await floor.start()
    rows = []
    try:
        await floor.read_ready_line("ready", 30.0)
        assert floor.process is not None
        pid = floor.process.pid
        bodies = _bodies(3000, requests, rng)
        await drive(port, bodies[:100], concurrency, 0, first_id=10**8)  # warm up
        for mode, count in (("NONE", 0), ("STREAMED", chunks)):
            before = _ticks(pid)
            wall = await drive(port, bodies, concurrency, count)
            rows.append({"response_body": mode, "requests": requests, "wall_s": wall,
                         "cpu_ms_per_request": 1000 * (_ticks(pid) - before) / _HZ / requests})
            print(f"  canned ext_proc server, response {mode}: {rows[-1]['cpu_ms_per_request']:.3f} ms/request",
                  flush=True)
    finally:
        await floor.stop()
    return rows


async def measure_idle(work: Path, ports: PortPool, server: MetricsServer, seconds: float,
                       source: Path | None, side: str) -> list[dict[str, float]]:
    rows = []
    for count in POOL_SIZES:
        epp = await _start_epp(work, ports, server, count, f"epp-idle-{count}-{side}", source)
        try:
            await asyncio.sleep(2.0)  # every endpoint scraped, connections open
            pid = _epp_pid(epp)
            answered0, server0, epp0, t0 = await server.answered(), _ticks(server.pid), _ticks(pid), time.monotonic()
            await asyncio.sleep(seconds)
            wall = time.monotonic() - t0
            answered, server1, epp1 = await server.answered(), _ticks(server.pid), _ticks(pid)
        finally:
            await epp.stop()
        cores, scrapes = (epp1 - epp0) / _HZ / wall, (answered - answered0) / wall
        expected = count / 0.05
        rows.append({"endpoints": count, "seconds": wall, "epp_cores": cores, "scrapes_per_s": scrapes,
                     "scrapes_per_s_expected": expected,
                     "epp_ms_per_scrape": 1000 * cores / scrapes if scrapes else 0.0,
                     # on a shared machine the EPP may not get the CPU to keep the full rate:
                     # its CPU per scrape times the rate it should keep
                     "epp_cores_at_full_rate": cores * expected / scrapes if scrapes else 0.0,
                     "metrics_server_cores": (server1 - server0) / _HZ / wall})
        print(f"  {side} {count:>4} endpoints: EPP {cores:.3f} cores, {scrapes:.0f} of {expected:.0f} scrapes/s, "
              f"{rows[-1]['epp_ms_per_scrape']:.3f} ms per scrape", flush=True)
    return rows


# ---- in-process measurements -------------------------------------------------------------------

def _endpoint_metrics(rng: random.Random) -> Any:
    from infergate.epp.metrics_scraper import EndpointMetrics

    return EndpointMetrics(waiting_queue=rng.randint(0, 12), kv_cache_usage=rng.random(), running=rng.randint(0, 64),
                           active_models=frozenset({f"lora-{rng.randint(0, 9)}"}), max_active_models=4,
                           update_time=time.monotonic())


def measure_scheduling(endpoints: int, requests: int, rng: random.Random,
                       feed_scrapes: bool = False) -> dict[str, float]:
    """``Scheduler.schedule`` + PreRequest, default profile, 3,000-token prompts (CPU time per call).
    ``feed_scrapes``: each endpoint's metrics are first fed to the inflight-load producers as the
    Director's scrape hook does (a tree whose producer has ``scraped``, from 2f64591 on)."""
    from infergate.epp.datastore import Endpoint
    from infergate.epp.scheduling.config import load_preset
    from infergate.epp.scheduling.framework import Candidate, SchedulingRequest

    scheduler = load_preset("default", seed=1)
    candidates = [Candidate(Endpoint(f"pod-{i}", f"10.0.{i // 250}.{i % 250 + 1}", 8000), _endpoint_metrics(rng))
                  for i in range(endpoints)]
    if feed_scrapes:
        for plugin in scheduler.plugins.values():
            if hasattr(plugin, "scraped"):  # the inflight-load producer (by duck type: older trees have none)
                for candidate in candidates:
                    plugin.scraped(candidate.hostport, candidate.metrics)
    samples = []
    clock = time.process_time  # CPU time: the machine may be shared, wall time would count waiting
    for i, prompt in enumerate(prompts(3000, requests, rng)):
        request = SchedulingRequest(f"r{i}", MODEL, prompt)
        started = clock()
        result, state = scheduler.schedule(request, candidates)
        scheduler.pre_request(state, request, result)
        samples.append(clock() - started)
    samples.sort()
    return {"endpoints": endpoints, "requests": requests, "mean_ms": 1000 * statistics.fmean(samples),
            "p50_ms": 1000 * samples[len(samples) // 2], "p99_ms": 1000 * samples[int(len(samples) * 0.99)]}


async def _handler_cpu(tokens: int, requests: int, rng: random.Random, flow_control: bool | None = None) -> float:
    """CPU per request of the ext_proc handler + Director, in process (no gRPC): request
    headers, buffered body, response headers, as in the gateway's default configuration.
    ``flow_control`` None: the Director's bare defaults (flow control off) on random metrics, as
    this measure always ran; True / False: the EPP's production wiring (``director_config``, the
    servicer's hold reply) with flow control on / off, on metrics with room (a request is admitted
    at once: the A/B measures the admission path, not a wait)."""
    from infergate.epp.build import director_config
    from infergate.epp.datastore import Datastore, PodInfo, PoolInfo
    from infergate.epp.director import EppDirector
    from infergate.epp.extproc.servicer import ExtProcServicer
    from infergate.epp.flowcontrol.unseen import SEND_VISIBILITY_DELAY
    from infergate.epp.metrics_scraper import MetricsStore
    from infergate.epp.options import EPPOptions
    from infergate.epp.runner import HOLD_MARGIN_S
    from infergate.epp.scheduling.config import load_preset

    datastore = Datastore()
    datastore.set_pool(PoolInfo("pool", selector=None, target_ports=(8000,)))
    datastore.replace_pods(PodInfo(f"pod-{i}", f"10.0.0.{i + 1}") for i in range(4))
    store = MetricsStore(staleness_threshold=1e9)
    scraped: list[tuple[str, Any]] = []
    for e in datastore.endpoints():
        metrics = _endpoint_metrics(rng)
        if flow_control is not None:  # room: queue <= 5, KV <= 0.8
            metrics = dataclasses.replace(metrics, waiting_queue=metrics.waiting_queue % 6,
                                          kv_cache_usage=0.8 * metrics.kv_cache_usage)
            scraped.append((e.hostport, metrics))
        store.update(e.hostport, metrics)
    if flow_control is None:
        servicer = ExtProcServicer(EppDirector(datastore, load_preset("default", seed=1), store))
    else:
        options = EPPOptions(pool_name="pool", flow_control=flow_control)
        config = director_config(options, accounts_picks=True)
        director = EppDirector(datastore, load_preset("default", seed=1), store, config=config)
        servicer = ExtProcServicer(director, hold_timeout=options.flow_control_max_wait + HOLD_MARGIN_S
                                   if flow_control else None, may_hold=director.may_hold)  # as the runner
    exchanges = [[_request_headers(i, MODE.NONE), pb.ProcessingRequest(request_body=pb.HttpBody(
        body=body, end_of_stream=True)), _RESPONSE_HEADERS] for i, body in enumerate(_bodies(tokens, requests, rng))]

    async def messages(items: list[pb.ProcessingRequest]) -> Any:
        for item in items:
            yield item

    started = time.process_time()
    for i, exchange in enumerate(exchanges):
        if scraped and i % SCRAPE_EVERY_REQUESTS == 0:  # the production wiring: scrapes arrive (same metrics)
            # ... that show every request sent so far (dated past flow control's visibility delay)
            now = time.monotonic() + SEND_VISIBILITY_DELAY
            for hostport, metrics in scraped:
                store.update(hostport, dataclasses.replace(metrics, update_time=now))
        async for _ in servicer.Process(messages(exchange), None):
            pass
    return 1000 * (time.process_time() - started) / requests


def measure_handler(requests: int, rng: random.Random, rounds: int = 2) -> list[dict[str, float]]:
    """Per prompt length, the least CPU per request of ``rounds`` runs."""
    return [{"prompt_tokens": tokens,
             "cpu_ms_per_request": min(asyncio.run(_handler_cpu(tokens, requests, rng)) for _ in range(rounds))}
            for tokens in PROMPT_TOKENS]


def measure_handler_flow_control(requests: int, seed: int, rounds: int = 3) -> list[dict[str, float]]:
    """Per prompt length, the handler's CPU per request with flow control off and on (the EPP's
    production wiring, the same metrics and bodies), the arms alternated ``rounds`` times; the
    least of each arm."""
    rows = []
    for tokens in PROMPT_TOKENS:
        arms: dict[bool, list[float]] = {False: [], True: []}
        for round_ in range(rounds):
            for arm in ((False, True) if round_ % 2 == 0 else (True, False)):
                arms[arm].append(asyncio.run(_handler_cpu(tokens, requests, random.Random(seed), flow_control=arm)))
        rows.append({"prompt_tokens": tokens, "off_ms": min(arms[False]), "on_ms": min(arms[True]),
                     "ratio": min(arms[True]) / min(arms[False])})
    return rows


async def _director_cpu(objectives: int, models: int, requests: int, rng: random.Random) -> float:
    from infergate.epp.contract import InferenceRequest
    from infergate.epp.datastore import (
        PREVIEW_GROUP,
        Datastore,
        InferenceModelInfo,
        Objective,
        PodInfo,
        PoolInfo,
    )
    from infergate.epp.director import EppDirector
    from infergate.epp.metrics_scraper import MetricsStore
    from infergate.epp.scheduling.config import load_preset

    datastore = Datastore()
    group = {"group": PREVIEW_GROUP} if models else {}
    datastore.set_pool(PoolInfo("pool", selector=None, target_ports=(8000,), **group))
    datastore.replace_pods(PodInfo(f"pod-{i}", f"10.0.0.{i + 1}") for i in range(4))
    datastore.replace_objectives(Objective(f"objective-{i}", i % 5) for i in range(objectives))
    datastore.replace_models(InferenceModelInfo(f"model-{i}", f"model-{i}") for i in range(models))
    store = MetricsStore(staleness_threshold=1e9)
    for e in datastore.endpoints():
        store.update(e.hostport, _endpoint_metrics(rng))
    director = EppDirector(datastore, load_preset("default", seed=1), store)
    texts = prompts(3000, requests, rng)
    work = []
    # every request names the same objective / model, so that only the datastore's size
    # differs between the runs (distinct names would add metric label sets per request)
    for i, prompt in enumerate(texts):
        model = "model-0" if models else MODEL
        objective = "objective-0" if objectives else None
        work.append(InferenceRequest(f"r{i}", {}, {"model": model, "prompt": prompt}, model, objective, prompt))
    started = time.process_time()
    for request in work:
        await director.handle_request(request)
        director.on_request_done(request.request_id, completed=True)
    return 1000 * (time.process_time() - started) / requests


def measure_datastore(requests: int, rng: random.Random, rounds: int = 3) -> dict[str, float]:
    """Each configuration ``rounds`` times, interleaved; the least CPU per request of each
    (contention from other processes only ever adds)."""
    configs = {"empty_ms": (1, 0), "objectives_10000_ms": (10_000, 0), "models_1_ms": (0, 1),
               "models_1000_ms": (0, 1_000)}
    samples: dict[str, list[float]] = {key: [] for key in configs}
    for _ in range(rounds):
        for key, (objectives, models) in configs.items():
            samples[key].append(asyncio.run(_director_cpu(objectives, models, requests, rng)))
    empty = sorted(samples["empty_ms"])
    return {"requests": requests, "rounds": rounds, **{key: min(values) for key, values in samples.items()},
            "empty_spread_ms": empty[1] - empty[0]}


# ---- the whole run ----------------------------------------------------------------------------

async def run_processes(args: argparse.Namespace, sources: dict[str, Path | None]) -> dict[str, dict[str, Any]]:
    """The measurements that run ``infergate epp`` processes, per side."""
    work = workdir("infergate-epp-cost-")
    ports = PortPool()
    rng = random.Random(args.seed)
    server = MetricsServer(loopback_addresses(max(POOL_SIZES), rng), ports(), work)
    await server.start()
    results: dict[str, dict[str, Any]] = {side: {} for side in sources}
    try:
        epps = {side: await _start_epp(work, ports, server, 4, f"epp-requests-{side}", source)
                for side, source in sources.items()}
        try:
            await asyncio.sleep(1.0)
            print("CPU per request (4 endpoints, default profile), response body NONE (the gateway's default):",
                  flush=True)
            for side, rows in (await measure_per_request(epps, args.requests, args.concurrency, 0, rng)).items():
                results[side]["per_request"] = rows
            print(f"CPU per request, response body STREAMED to the EPP in {args.chunks} chunks:", flush=True)
            streamed = await measure_per_request(epps, args.requests, args.concurrency, args.chunks, rng)
            for side, rows in streamed.items():
                results[side]["per_request_streamed"] = rows
        finally:
            for epp in epps.values():
                await epp.stop()
        print("The transport's floor (a canned ext_proc server):", flush=True)
        floor = await measure_grpc_floor(work, ports, args.requests, args.concurrency, args.chunks, rng)
        for side in sources:
            results[side]["grpc_floor"] = floor
        print("Idle scrape cost (50 ms interval):", flush=True)
        for side, source in sources.items():
            results[side]["idle"] = await measure_idle(work, ports, server, args.idle_seconds, source, side)
    finally:
        await server.process.stop()
    return results


def in_process(args: argparse.Namespace) -> dict[str, Any]:
    """The measurements that import the EPP's code (run in a subprocess for the baseline)."""
    rng = random.Random(args.seed)
    print("The EPP's own work per request (ext_proc handler + Director, in process, no gRPC):", flush=True)
    handler = measure_handler(args.requests, rng)
    print("  " + ", ".join(f"{r['prompt_tokens']}: {r['cpu_ms_per_request']:.3f} ms" for r in handler), flush=True)
    print("Scheduling over 256 endpoints (in process):", flush=True)
    scheduling = measure_scheduling(256, args.schedule_requests, rng)
    print(f"  {scheduling['mean_ms']:.3f} ms mean", flush=True)
    print("Director CPU per request with 10,000 objectives / 1,000 models (in process):", flush=True)
    datastore = measure_datastore(args.schedule_requests, rng)
    print(f"  {datastore}", flush=True)
    return {"handler": handler, "scheduling_256": scheduling, "datastore": datastore}


def baseline_sources(rev: str, work: Path) -> Path:
    """``src`` of git revision ``rev`` (the EPP before the speed work), extracted under ``work``."""
    archive = subprocess.run(["git", "archive", rev, "src"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(work, filter="data")
    return work / "src"


def _in_process_elsewhere(source: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``in_process`` with the EPP's code from ``source`` (this file runs as a script there)."""
    out = source.parent / "in-process.json"
    subprocess.run([sys.executable, __file__, "--in-process-only", str(out), "--seed", str(args.seed),
                    "--schedule-requests", str(args.schedule_requests)],
                   check=True, env={**os.environ, "PYTHONPATH": str(source)})
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    import uvloop

    header = {"machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
              "settings": {"requests": args.requests, "concurrency": args.concurrency,
                           "response_chunks": args.chunks, "idle_seconds": args.idle_seconds}}
    sources: dict[str, Path | None] = {args.label: None}
    if args.baseline_rev:
        sources["baseline"] = baseline_sources(args.baseline_rev, workdir("infergate-epp-baseline-"))
    results = uvloop.run(run_processes(args, sources))
    for side, source in sources.items():
        print(f"[{side}]", flush=True)
        results[side].update(in_process(args) if source is None else _in_process_elsewhere(source, args))
        results[side] = {"label": side, **({"revision": args.baseline_rev} if source else {}), **header,
                         **results[side]}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infergate.bench.epp_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/results/epp-cost"))
    parser.add_argument("--label", default="after", help="'baseline' or 'after' (the report compares them)")
    parser.add_argument("--requests", type=int, default=300, help="requests per prompt length and mode (default 300)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--chunks", type=int, default=16, help="streamed response chunks per request")
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--schedule-requests", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--baseline-rev", default="",
                        help=f"also measure the EPP of this git revision, interleaved (make bench: {BASELINE_COMMIT})")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the JSON files")
    parser.add_argument("--in-process-only", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--handler-flow-control-ab", action="store_true",
                        help="only measure the ext_proc handler's CPU per request with flow control off and on "
                             "(in process, alternated) and print a markdown table")
    args = parser.parse_args(argv)
    if args.handler_flow_control_ab:
        print("| prompt tokens | flow control off, CPU ms/request | on | on / off |\n|---:|---:|---:|---:|")
        for row in measure_handler_flow_control(args.requests, args.seed):
            print(f"| {row['prompt_tokens']:,} | {row['off_ms']:.3f} | {row['on_ms']:.3f} | {row['ratio']:.2f}x |",
                  flush=True)
        return 0
    if args.in_process_only:
        args.in_process_only.write_text(json.dumps(in_process(args)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for side, result in run(args).items():
            (args.out / f"{side}.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.label != "baseline":
        # the report lives in its own module (matplotlib is imported only there)
        from infergate.bench.epp_cost_report import write_report

        write_report(args.out, args.label)
        print(f"wrote {args.out}/report.md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
