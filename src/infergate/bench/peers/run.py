"""`infergate bench peers`: every router on every workload, each run on a fresh pool.

For each workload, phase (open loop, closed loop) and router: start the simulated pool
(cold caches), start the router in front of it, send the seeded sessions, then read the
replicas' prefix-cache counters and the 404s they answered (a peer calling an endpoint the
simulator lacks), stop everything. Runs are sequential so each has the machine to itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from infergate.bench.peers import driver
from infergate.bench.peers.cpu import RunCpu
from infergate.bench.peers.routers import RunContext, make_router, skip_reason
from infergate.bench.peers.summary import Summary, load_shares, prefix_hit_rate, replicas_per_group, summarize
from infergate.bench.peers.workloads import SLOW_PROFILE_SETTINGS, Workload, make
from infergate.bench.scheduling import CpuSampler
from infergate.bench.topology import PortPool, SimReplicas, workdir
from infergate.util.net import random_loopback_block
from infergate.util.tls import default_verify_context

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
PHASES = ("open", "closed")
MAX_REPEATS = 20
# how a closed loop's output tokens/s and goodput are rated (summary.summarize's window):
RATES_IN_WINDOW = "window"  # what arrived within the phase's duration, over that duration
RATES_UNTIL_DRAINED = "until-drained"  # everything, over the time until the last turn ended (before session 23)
CLOSED_LOOP_RATES = (RATES_IN_WINDOW, RATES_UNTIL_DRAINED)


@dataclass(frozen=True)
class PeersConfig:
    workloads: tuple[str, ...]
    routers: tuple[str, ...]
    duration: float = 60.0  # wall seconds per phase
    time_scale: float = 1.0
    replicas: int = 4
    seed: int = 1  # repeat i (0-based) uses seed + i
    phases: tuple[str, ...] = PHASES
    envoy_bin: str | None = None
    epp_args: tuple[str, ...] = ()  # extra `infergate epp` flags for every infergate router
    repeats: int = 1  # each workload/phase measured this many times, repeat i with seed + i
    epp_replicas: int = 1  # EPPs active-active behind each infergate router's Envoy
    epp_pick_sharing: bool = False  # ... sharing their picks' prefix blocks (--pick-sharing-port/-peers)
    # a pool's slower replicas carry the pod label infergate.io/speed-factor=<this> (the EPP's pool file)
    declare_slow_speed_factor: float | None = None
    # a record of the method, not a choice: runs measure RATES_IN_WINDOW; details.json stored before it
    # read back as RATES_UNTIL_DRAINED, so that they merge and compare only with each other
    closed_loop_rates: str = RATES_IN_WINDOW

    def __post_init__(self) -> None:
        if not 1 <= self.repeats <= MAX_REPEATS:
            raise ValueError(f"repeats: {self.repeats} is not in 1..{MAX_REPEATS}")
        if self.closed_loop_rates not in CLOSED_LOOP_RATES:
            raise ValueError(f"closed_loop_rates: {self.closed_loop_rates!r} is not one of {', '.join(CLOSED_LOOP_RATES)}")

    @property
    def seeds(self) -> tuple[int, ...]:
        """The repeats' seeds, in order."""
        return tuple(self.seed + i for i in range(self.repeats))


@dataclass
class RunOutcome:
    workload: str
    phase: str
    router: str
    summary: Summary | None
    ttfts: list[float] = field(default_factory=list)  # model seconds, for the CDF plot
    not_found: dict[str, int] = field(default_factory=dict)  # "METHOD /path" -> 404s the replicas answered
    calls: dict[str, int] = field(default_factory=dict)  # "METHOD /path" -> requests the replicas received
    log_404_lines: int = 0  # lines of the router's own log mentioning a 404
    replicas_per_group: float = float("nan")  # distinct replicas serving each prefix group, on average
    load_shares: dict[str, float] = field(default_factory=dict)  # replica -> fraction of the requests
    # fraction of 50 ms (model time) samples in which the replicas' waiting queues differed: when they
    # do, a min-max normalized queue score gives the longest queue 0 and the shortest 1
    queue_imbalance: float = float("nan")
    error: str | None = None
    seed: int | None = None  # the repeat's seed (traffic and simulators); None: the config's seed


@dataclass
class PeersResult:
    config: PeersConfig
    runs: list[RunOutcome]
    skipped: dict[str, str]  # router -> why
    descriptions: dict[str, str]  # workload -> description

    def by_phase(self) -> dict[str, list[RunOutcome]]:
        """The runs per "<workload>/<phase>", in the order they ran."""
        groups: dict[str, list[RunOutcome]] = {}
        for run in self.runs:
            groups.setdefault(f"{run.workload}/{run.phase}", []).append(run)
        return groups


def _sim_extra(workload: Workload, seed: int, slow: bool) -> list[str]:
    pool = workload.pool
    extra = ["--profile", pool.profile, "--num-gpu-blocks", str(pool.num_gpu_blocks), "--mean-output-tokens", "0",
             "--seed", str(seed), "--max-loras", str(pool.max_loras)]
    if pool.lora_adapters:
        extra += ["--lora", ",".join(pool.lora_adapters)]
    if slow:  # a second process: its own pod names (x-inference-pod), or they would repeat sim-0, sim-1...
        extra += ["--pod-name", "slow"]
        for setting in SLOW_PROFILE_SETTINGS:
            extra += ["--set", setting]
    return extra


async def _start_pool(workload: Workload, ctx_dir: Path, ports: PortPool, time_scale: float,
                      seed: int, sims: list[SimReplicas]) -> list[str]:
    """Start the pool's simulators, each added to ``sims`` as it starts (so that a stop while
    the next one starts still stops it); the endpoints."""
    pool = workload.pool
    port = ports()
    addresses = random_loopback_block(pool.replicas, port)
    fast = pool.replicas - pool.slow_replicas
    groups = [(addresses[:fast], False), (addresses[fast:], True)]
    endpoints: list[str] = []
    for i, (addrs, slow) in enumerate(groups):
        if not addrs:
            continue
        sub = ctx_dir / f"sim-{i}"
        sub.mkdir(parents=True, exist_ok=True)
        replicas = SimReplicas(addrs, port, time_scale=time_scale, model=MODEL, workdir=sub,
                               extra=_sim_extra(workload, seed, slow))
        sims.append(replicas)
        await replicas.start()
        endpoints += replicas.expected
    return endpoints


async def _scrape(endpoints: list[str]) -> tuple[list[str], dict[str, int], dict[str, int]]:
    metrics: list[str] = []
    not_found: dict[str, int] = {}
    calls: dict[str, int] = {}
    async with httpx.AsyncClient(verify=default_verify_context(), timeout=10.0) as client:
        for e in endpoints:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                state = (await client.get(f"http://{e}/debug/state")).json()  # before our /metrics scrape
                metrics.append((await client.get(f"http://{e}/metrics")).text)
                for key, n in state.get("not_found", {}).items():
                    not_found[key] = not_found.get(key, 0) + int(n)
                for key, n in state.get("calls", {}).items():
                    calls[key] = calls.get(key, 0) + int(n)
    return metrics, not_found, calls


class QueueSampler:
    """Samples every replica's waiting queue (``GET /debug/state``) every 50 ms of model time."""

    def __init__(self, endpoints: list[str], time_scale: float) -> None:
        self.endpoints = endpoints
        self.interval = 0.05 / time_scale
        self.samples = 0
        self.imbalanced = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        async with httpx.AsyncClient(verify=default_verify_context(), timeout=5.0) as client:
            while True:
                await asyncio.sleep(self.interval)
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    states = await asyncio.gather(*(client.get(f"http://{e}/debug/state") for e in self.endpoints))
                    queues = [len(r.json()["waiting"]) for r in states]
                    self.samples += 1
                    self.imbalanced += max(queues) > min(queues)

    async def stop(self) -> float:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.imbalanced / self.samples if self.samples else float("nan")


_LOG_404 = re.compile(r"(status\S{0,12}\D{0,3}404\b|\b404 Not Found)", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


async def run_one(config: PeersConfig, workload: Workload, phase: str, router_name: str, base: Path,
                  ports: PortPool) -> RunOutcome:
    """One router on one workload phase, with ``config.seed`` (the repeat's seed)."""
    run_dir = base / workload.name / phase
    if config.repeats > 1:
        run_dir = run_dir / f"seed-{config.seed}"
    run_dir = run_dir / router_name
    run_dir.mkdir(parents=True, exist_ok=True)
    sims: list[SimReplicas] = []
    router = make_router(router_name, config.envoy_bin, config.epp_args, config.epp_replicas,
                         config.epp_pick_sharing)
    try:  # the finally stops what started, also on SIGTERM/Ctrl-C (the cancellation of the run)
        endpoints = await _start_pool(workload, run_dir, ports, config.time_scale, config.seed, sims)
        ctx = RunContext(endpoints, run_dir, ports, config.time_scale, config.seed, workload.objectives,
                         workload.pool.declared_labels(config.declare_slow_speed_factor))
        url = await router.start(ctx) + "/v1/completions"
        await asyncio.sleep(1.0)
        pids = router.pids()
        sampler = CpuSampler(pids)
        sim_pids = {f"simulator-{i}": sim.process.process.pid for i, sim in enumerate(sims)
                    if sim.process.process is not None}
        run_cpu = RunCpu({**pids, **sim_pids})
        queues = QueueSampler(endpoints, config.time_scale)
        queues.start()
        if phase == "open":
            results, wall = await driver.run_open(url, MODEL, workload, config.time_scale)
        else:
            results, wall = await driver.run_closed(url, MODEL, workload, config.time_scale, config.duration)
        cpu = sampler.report()
        headroom = run_cpu.figures()
        queue_imbalance = await queues.stop()
        # cores used on average over the run, times its length: the routers' CPU seconds
        router_cpu_s = sum(v for k, v in cpu.per_process.items() if k != "loadgen") * wall
        metrics, not_found, calls = await _scrape(endpoints)
        priority = bool(workload.objectives)
        summary = summarize(results, wall, config.time_scale, prefix_hit=prefix_hit_rate(metrics),
                            priority=priority, router_cpu_s=router_cpu_s, machine_busy=headroom.machine_busy,
                            bench_cores=headroom.bench_cores, cpu_wait=headroom.cpu_wait,
                            sched_delay_ms=headroom.sched_delay_ms,
                            window=config.duration if phase == "closed" else None)
        ttfts = [r.ttft * config.time_scale for r in results
                 if r.ok and r.ttft is not None and (not priority or r.objective in (None, "critical"))]
        log_404 = sum(1 for line in _ANSI.sub("", router.log_text()).splitlines()
                      if _LOG_404.search(line))
        return RunOutcome(workload.name, phase, router_name, summary, ttfts, not_found, calls, log_404,
                          replicas_per_group(results), load_shares(results), queue_imbalance, seed=config.seed)
    finally:
        try:
            await router.stop()
            for sim in sims:
                await sim.stop()
        except asyncio.CancelledError:  # the stop was cut short (a second Ctrl-C): kill what is left at once
            for process in [*router.processes, *(sim.process for sim in sims)]:
                process.kill()
            raise


async def run_peers(config: PeersConfig, progress: Callable[[str], None] = lambda _: None,
                    work: Path | None = None,
                    checkpoint: Callable[[PeersResult], object] | None = None) -> PeersResult:
    """Every router on every workload and phase, ``config.repeats`` times (repeat i with seed
    ``config.seed + i``, in the order workload, phase, repeat, router); ``checkpoint`` gets the
    result so far after each run (the CLI writes the report with it, so a long run that is stopped
    keeps what it measured)."""
    base = work or workdir("infergate-bench-peers-")
    ports = PortPool()
    skipped = {name: reason for name in config.routers if (reason := skip_reason(name)) is not None}
    runs: list[RunOutcome] = []
    descriptions: dict[str, str] = {}
    model_duration = config.duration * config.time_scale
    for name in config.workloads:  # workload, phase, repeat, router: a stopped run keeps whole repeats
        for phase in config.phases:
            for seed in config.seeds:
                workload = make(name, model_duration, seed, config.replicas, closed=phase == "closed")
                descriptions[name] = workload.description
                label = f"{name}/{phase}" + (f" seed {seed}" if config.repeats > 1 else "")
                repeat_config = dataclasses.replace(config, seed=seed)
                for router in config.routers:
                    if router in skipped:
                        continue
                    load = (f"{workload.requests} requests" if phase == "open"
                            else f"closed loop, {workload.concurrency} users")
                    progress(f"{label}: {router} ({load})")
                    try:
                        outcome = await run_one(repeat_config, workload, phase, router, base, ports)
                    except Exception as exc:  # one broken router must not lose the others' numbers
                        outcome = RunOutcome(name, phase, router, None,
                                             error=f"{type(exc).__name__}: {exc}"[:500])
                        progress(f"{label}: {router} FAILED: {outcome.error}")
                    outcome.seed = seed
                    if outcome.summary is not None:
                        s = outcome.summary
                        progress(f"{label}: {router}: TTFT p90 {s.ttft_p90:.3f}s, {s.output_tokens_per_s:.0f} "
                                 f"tok/s, failed {s.failed}, prefix hit {s.prefix_hit:.0%}, "
                                 f"machine {s.machine_busy:.0%} busy, benchmark {s.bench_cores:.2f} cores, "
                                 f"CPU wait {s.cpu_wait:.0%} ({s.sched_delay_ms:.2f} ms per wake-up)")
                    runs.append(outcome)
                    if checkpoint is not None:
                        checkpoint(PeersResult(config, list(runs), skipped, dict(descriptions)))
    return PeersResult(config, runs, skipped, descriptions)

