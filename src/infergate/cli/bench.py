"""`infergate bench`: benchmarks (`infergate bench scheduling ...`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Run benchmarks (not tests): real processes on loopback, numbers on stdout."""


@command.command("scheduling")
@click.option("--replicas", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Simulator replicas per profile.")
@click.option("--duration", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds of traffic per profile (profiles run one after the other).")
@click.option("--profiles", default="default,round-robin", show_default=True,
              help="Comma-separated EPP scheduling presets: default (= upstream-v1.0), predicted-latency, round-robin, random, prefix-load, v0.3.0.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object keyed by profile (ttft_p50, ttft_p90, itl_p50, e2e_p90 in seconds, "
                   "output_tokens_per_s, requests, failed) instead of the table.")
@click.option("--time-scale", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Simulated model speed (1 = real time). Lower it when the machine has no CPU headroom; "
                   "the EPP's scrape interval follows (50 ms of model time).")
@click.option("--rate", type=click.FloatRange(min=0.01), default=8.0, show_default=True,
              help="Poisson arrival rate in requests per second of model time (scaled by --time-scale).")
@click.option("--concurrency", type=click.IntRange(1, 4096), default=None,
              help="Closed loop instead of open loop: this many users, each sending its next request when "
                   "its previous one ends, for --duration seconds (--rate is then ignored).")
@click.option("--groups", type=click.IntRange(1, 10_000), default=24, show_default=True,
              help="Distinct long system prompts.")
@click.option("--system-prompt-tokens", type=click.IntRange(1), default=3000, show_default=True)
@click.option("--question-tokens", type=click.IntRange(1), default=40, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1), default=64, show_default=True, help="Output tokens per request.")
@click.option("--num-gpu-blocks", type=click.IntRange(16), default=2500, show_default=True,
              help="Each replica's KV cache in blocks of 16 tokens (smaller than all prompts together).")
@click.option("--sim-profile", default="llama-3.1-8b-a100-40gb", show_default=True,
              help="Simulator latency profile.")
@click.option("--seed", type=int, default=1, show_default=True, help="Workload seed (same traffic for every profile).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write results.md, results.json and PNG plots to this directory "
                   "(e.g. bench/results/scheduling).")
def scheduling(replicas: int, duration: float, profiles: str, as_json: bool, time_scale: float, rate: float,
               concurrency: int | None, groups: int, system_prompt_tokens: int, question_tokens: int, max_tokens: int,
               num_gpu_blocks: int, sim_profile: str, seed: int, out_dir: Path | None) -> None:
    """Compare EPP scheduling profiles on a shared-prefix workload near saturation.

    Open loop (Poisson --rate) by default; --concurrency N runs a closed loop of N users.

    Starts, per profile, simulator replicas and an EPP with that profile's config, plus one
    Envoy with a listener per profile; sends the same seeded Poisson stream of streaming
    completions (long shared system prompts, short questions) through Envoy to each, and
    prints per profile: time to first token p50/p90, inter-token latency p50, end-to-end
    p90, output tokens/s, requests and failed requests, plus the machine's CPU use.
    """
    import uvloop

    from infergate.bench.scheduling import BenchConfig, format_table, run_scheduling_bench, write_outputs
    from infergate.bench.scheduling import as_json as result_json
    from infergate.bench.workload import WorkloadSpec

    names = tuple(p.strip() for p in profiles.split(",") if p.strip())
    if not names:
        raise click.BadParameter("at least one profile is needed", param_hint="--profiles")
    from infergate.epp.scheduling.config import PRESETS

    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        raise click.BadParameter(f"unknown profile(s) {', '.join(unknown)} (known: {', '.join(PRESETS)})",
                                 param_hint="--profiles")
    spec = WorkloadSpec(groups=groups, system_prompt_tokens=system_prompt_tokens, question_tokens=question_tokens,
                        max_tokens=max_tokens, rate=rate * time_scale, seed=seed)
    config = BenchConfig(replicas=replicas, duration=duration, profiles=names, time_scale=time_scale,
                         workload=spec, sim_profile=sim_profile, num_gpu_blocks=num_gpu_blocks,
                         concurrency=concurrency)

    def progress(text: str) -> None:
        click.echo(text, err=True)

    result = uvloop.run(run_scheduling_bench(config, progress))
    if as_json:
        click.echo(json.dumps(result_json(result)))
    else:
        click.echo(format_table(result))
    for run in result.runs:
        own = sum(run.cpu.per_process.values())
        if run.cpu.machine_busy > 0.85:
            click.echo(f"warning: the machine was {run.cpu.machine_busy:.0%} busy during {run.name} (the benchmark's "
                       f"own processes used {own:.2f} cores): latencies include host contention; lower "
                       f"--time-scale or run on a quieter machine", err=True)
    if out_dir is not None:
        for path in write_outputs(result, out_dir):
            click.echo(f"wrote {path}", err=True)
    sys.stdout.flush()
