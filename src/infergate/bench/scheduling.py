"""`infergate bench scheduling`: scheduling profiles compared on the same shared-prefix traffic.

Topology, all real processes on loopback: per profile its own simulator replicas (one
``infergate sim`` process) and its own ``infergate epp`` (static pool file, the profile's
EndpointPickerConfig preset), and one Envoy with one listener per profile. Profiles run one
after the other (so each has the machine to itself) with the identical seeded Poisson
schedule; each starts from cold simulator caches. With ``concurrency`` set the load is a
closed loop instead: that many users, each sending its next request (from the same seeded
sequence) as soon as its previous one ends, for ``duration`` seconds.

The workload makes prefix-aware routing matter the way it does on GPUs: the system prompts
together need more KV cache than one replica has (``--num-gpu-blocks``), so spreading every
group over every replica (round robin) keeps evicting them, while sending a group to the
replica that already holds its prefix keeps them cached.

CPU headroom: the machine's busy fraction (``/proc/stat``) and each process's CPU are
sampled during every profile; if the machine is close to busy, the numbers measure the
host, not the scheduler: lower ``--time-scale`` (a slower simulated model), which also
stretches the EPP's scrape interval (50 ms of model time).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from infergate.bench.loadgen import RequestResult, run_plan, stream_completion
from infergate.bench.stats import ProfileSummary, summarize
from infergate.bench.topology import (
    EnvoyProcess,
    EPPProcess,
    Lane,
    PortPool,
    SimReplicas,
    static_pool_file,
    workdir,
)
from infergate.bench.workload import PlannedRequest, WorkloadSpec, _text, plan, system_prompts
from infergate.util.net import random_loopback_block
from infergate.util.tls import default_verify_context

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@dataclass(frozen=True)
class BenchConfig:
    replicas: int = 4
    duration: float = 60.0
    profiles: tuple[str, ...] = ("default", "round-robin")
    time_scale: float = 1.0
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    sim_profile: str = "llama-3.1-8b-a100-40gb"
    num_gpu_blocks: int = 2500
    warmup: float = 1.0
    envoy_bin: str | None = None
    concurrency: int | None = None  # closed loop with this many users; None = open loop (Poisson)


@dataclass
class CpuReport:
    machine_busy: float  # fraction of all CPUs busy, averaged over the run
    cpus: int
    per_process: dict[str, float]  # process -> CPU cores used on average


@dataclass
class ProfileRun:
    name: str
    summary: ProfileSummary
    results: list[RequestResult]
    wall_time: float
    cpu: CpuReport


@dataclass
class BenchResult:
    config: BenchConfig
    runs: list[ProfileRun]

    def by_name(self) -> dict[str, ProfileRun]:
        return {run.name: run for run in self.runs}

    def ttft_p90_ratio(self, baseline: str = "round-robin", candidate: str = "default") -> float | None:
        runs = self.by_name()
        if baseline not in runs or candidate not in runs:
            return None
        base, cand = runs[baseline].summary.ttft_p90, runs[candidate].summary.ttft_p90
        return base / cand if cand and cand == cand and base == base else None


def _machine_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields), idle


def _process_ticks(pid: int) -> int:
    """utime + stime of ``pid`` and its reaped children, in clock ticks (0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(parts[11]) + int(parts[12])


class CpuSampler:
    """Machine and per-process CPU over a time window, from /proc."""

    def __init__(self, processes: dict[str, int]) -> None:
        self.processes = processes
        self._start_machine = _machine_ticks()
        self._start_proc = {name: _process_ticks(pid) for name, pid in processes.items()}
        self._start_self = sum(os.times()[:2])
        self._t0 = time.monotonic()

    def report(self) -> CpuReport:
        total, idle = _machine_ticks()
        d_total = total - self._start_machine[0]
        d_idle = idle - self._start_machine[1]
        elapsed = max(1e-6, time.monotonic() - self._t0)
        hz = os.sysconf("SC_CLK_TCK")
        per = {name: (_process_ticks(pid) - self._start_proc[name]) / hz / elapsed
               for name, pid in self.processes.items()}
        per["loadgen"] = (sum(os.times()[:2]) - self._start_self) / elapsed
        busy = 1.0 - d_idle / d_total if d_total > 0 else float("nan")
        return CpuReport(busy, os.cpu_count() or 1, per)


async def run_scheduling_bench(config: BenchConfig, progress: Callable[[str], None] = lambda _: None,
                               work: Path | None = None) -> BenchResult:
    work = work or workdir("infergate-bench-")
    ports = PortPool()
    spec = config.workload
    planned = plan(spec, config.duration)
    refresh_ms = max(1, round(50 / config.time_scale))
    lanes: list[Lane] = []
    parts: list[tuple[str, SimReplicas, EPPProcess]] = []
    for name in config.profiles:
        from infergate.epp.scheduling.config import preset_text

        profile_dir = work / name
        profile_dir.mkdir(parents=True, exist_ok=True)
        config_file = profile_dir / "epp-config.yaml"
        config_file.write_text(preset_text(name))
        sim_port = ports()
        addresses = random_loopback_block(config.replicas, sim_port)
        sims = SimReplicas(addresses, sim_port, time_scale=config.time_scale, model=MODEL, workdir=profile_dir,
                           extra=["--profile", config.sim_profile, "--num-gpu-blocks", str(config.num_gpu_blocks),
                                  "--mean-output-tokens", "0", "--seed", str(spec.seed)])
        pool_file = static_pool_file(profile_dir / "pool.yaml", pool_name="pool",
                                     endpoints=[f"{a}:{sim_port}" for a in addresses])
        epp = EPPProcess(pool_file=pool_file, workdir=profile_dir, name="epp", config_file=config_file,
                         refresh_metrics_interval=f"{refresh_ms}ms", ports=ports,
                         extra=["--seed", str(spec.seed), "--metrics-staleness-threshold",
                                f"{max(0.05, 2.0 / config.time_scale):.3f}s"])
        lanes.append(Lane(name, ports(), epp.grpc_port, tuple(sims.expected), message_timeout_s=10.0))
        parts.append((name, sims, epp))

    envoy = EnvoyProcess(lanes, workdir=work, envoy_bin=config.envoy_bin, ports=ports)
    runs: list[ProfileRun] = []
    await envoy.start()
    try:
        for (name, sims, epp), lane in zip(parts, lanes, strict=True):
            progress(f"{name}: starting {config.replicas} simulator replicas and the EPP")
            try:
                await sims.start()
                # the EPP's staleness threshold for saturation stays upstream's 200 ms of model time
                env_scale = {"SD_METRICS_STALENESS_THRESHOLD": f"{max(0.05, 0.2 / config.time_scale):.3f}s"}
                epp.process.env = {**os.environ, **env_scale}
                await epp.start()
                await asyncio.sleep(config.warmup)
                pids = {"envoy": _pid(envoy.process.process), "epp": _pid(epp.process.process),
                        "simulator": _pid(sims.process.process)}
                url = f"http://127.0.0.1:{lane.listen_port}/v1/completions"
                sampler = CpuSampler(pids)
                if config.concurrency is None:
                    progress(f"{name}: {len(planned)} requests over {config.duration:.0f}s "
                             f"(Poisson {spec.rate}/s, {spec.groups} shared prefixes)")
                    results, wall = await run_plan(url, MODEL, planned)
                else:
                    progress(f"{name}: closed loop, {config.concurrency} users for {config.duration:.0f}s "
                             f"({spec.groups} shared prefixes)")
                    results, wall = await run_closed_loop(url, MODEL, spec, config.concurrency, config.duration)
                cpu = sampler.report()
                summary = summarize(results, wall)
                runs.append(ProfileRun(name, summary, results, wall, cpu))
                progress(f"{name}: done, machine busy {cpu.machine_busy:.0%}")
            finally:
                await epp.stop()
                await sims.stop()
    finally:
        await envoy.stop()
    return BenchResult(config, runs)


def closed_loop_requests(spec: WorkloadSpec) -> Iterator[PlannedRequest]:
    """The same kind of requests as ``plan`` (seeded, a uniform group each), without times."""
    prompts = system_prompts(spec)
    rng = random.Random(spec.seed)
    number = 0
    while True:
        group = rng.randrange(spec.groups)
        question = f"\nQuestion {number}: " + _text(rng, spec.question_tokens) + "?\nAnswer:"
        yield PlannedRequest(0.0, group, prompts[group] + question, spec.max_tokens)
        number += 1


async def run_closed_loop(url: str, model: str, spec: WorkloadSpec, concurrency: int, duration: float,
                          timeout: float = 600.0) -> tuple[list[RequestResult], float]:
    """``concurrency`` users, each sending its next request when its previous one ends, until
    ``duration`` seconds have passed (requests still open then are waited for and counted)."""
    requests = closed_loop_requests(spec)
    results: list[RequestResult] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=max(16, concurrency))
    async with httpx.AsyncClient(verify=default_verify_context(), timeout=httpx.Timeout(timeout, connect=10.0),
                                 limits=limits) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def user() -> None:
            while loop.time() - start < duration:
                results.append(await stream_completion(client, url, model, next(requests)))

        await asyncio.gather(*(user() for _ in range(concurrency)))
        return results, loop.time() - start


def _pid(process: asyncio.subprocess.Process | None) -> int:
    return process.pid if process is not None else -1


def format_table(result: BenchResult) -> str:
    header = ("profile", "ttft_p50", "ttft_p90", "itl_p50", "e2e_p90", "out_tok/s", "requests", "failed",
              "machine_busy", "bench_cores")
    rows = [header]
    for run in result.runs:
        s = run.summary
        rows.append((run.name, f"{s.ttft_p50:.3f}s", f"{s.ttft_p90:.3f}s", f"{s.itl_p50 * 1000:.1f}ms",
                     f"{s.e2e_p90:.3f}s", f"{s.output_tokens_per_s:.1f}", str(s.requests), str(s.failed),
                     f"{run.cpu.machine_busy:.0%}", f"{sum(run.cpu.per_process.values()):.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    ratio = result.ttft_p90_ratio()
    if ratio is not None:
        lines.append(f"TTFT p90 round-robin / default = {ratio:.2f}x")
    return "\n".join(lines)


def markdown_report(result: BenchResult, plots: Sequence[str] = ()) -> str:
    cfg = result.config
    spec = cfg.workload
    load = (f"Poisson {spec.rate:g} req/s" if cfg.concurrency is None
            else f"closed loop, {cfg.concurrency} concurrent users")
    lines = [
        "# Scheduling benchmark",
        "",
        f"- replicas: {cfg.replicas} simulated `{cfg.sim_profile}` (KV cache {cfg.num_gpu_blocks} blocks of 16 "
        f"tokens each), time scale {cfg.time_scale}",
        f"- workload: {load} for {cfg.duration:.0f} s, {spec.groups} shared system prompts of "
        f"~{spec.system_prompt_tokens} tokens, questions of ~{spec.question_tokens} tokens, "
        f"{spec.max_tokens} output tokens, streaming, seed {spec.seed}",
        "",
        "| profile | TTFT p50 | TTFT p90 | ITL p50 | E2E p90 | output tok/s | requests | failed | machine busy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in result.runs:
        s = run.summary
        lines.append(f"| {run.name} | {s.ttft_p50:.3f} s | {s.ttft_p90:.3f} s | {s.itl_p50 * 1000:.1f} ms | "
                     f"{s.e2e_p90:.3f} s | {s.output_tokens_per_s:.1f} | {s.requests} | {s.failed} | "
                     f"{run.cpu.machine_busy:.0%} |")
    ratio = result.ttft_p90_ratio()
    if ratio is not None:
        lines += ["", f"TTFT p90 of round-robin / default: **{ratio:.2f}x**."]
    lines += ["", "CPU (cores used on average during the run):", ""]
    for run in result.runs:
        per = ", ".join(f"{k} {v:.2f}" for k, v in run.cpu.per_process.items())
        lines.append(f"- {run.name}: machine {run.cpu.machine_busy:.0%} of {run.cpu.cpus} CPUs busy (all users); "
                     f"benchmark processes {sum(run.cpu.per_process.values()):.2f} cores: {per}")
    for plot in plots:
        lines += ["", f"![{plot}]({plot})"]
    return "\n".join(lines) + "\n"


def write_outputs(result: BenchResult, out: Path) -> list[Path]:
    """results.json, results.md and PNG plots (TTFT CDF, latency bars) under ``out``."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    plots: list[str] = []
    with contextlib.suppress(ImportError):
        plots = _plots(result, out)
        written += [out / p for p in plots]
    (out / "results.json").write_text(json.dumps(as_json(result), indent=2) + "\n")
    (out / "results.md").write_text(markdown_report(result, plots))
    return [out / "results.json", out / "results.md", *written]


def as_json(result: BenchResult) -> dict[str, dict[str, float | int]]:
    return {run.name: run.summary.as_dict() for run in result.runs}


def _plots(result: BenchResult, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: list[str] = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for run in result.runs:
        ttfts = sorted(r.ttft for r in run.results if r.ok and r.ttft is not None)
        if ttfts:
            ax.plot(ttfts, [(i + 1) / len(ttfts) for i in range(len(ttfts))], label=run.name)
    ax.set_xscale("log")
    ax.set_xlabel("time to first token (s)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("TTFT distribution per scheduling profile")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ttft_cdf.png", dpi=110)
    plt.close(fig)
    names.append("ttft_cdf.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    metrics = ("ttft_p50", "ttft_p90", "e2e_p90")
    width = 0.8 / max(1, len(result.runs))
    for i, run in enumerate(result.runs):
        values = [getattr(run.summary, m) for m in metrics]
        ax.bar([x + i * width for x in range(len(metrics))], values, width, label=run.name)
    ax.set_xticks([x + width * (len(result.runs) - 1) / 2 for x in range(len(metrics))], list(metrics))
    ax.set_ylabel("seconds")
    ax.set_title("Latency per scheduling profile")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency_bars.png", dpi=110)
    plt.close(fig)
    names.append("latency_bars.png")
    return names
