"""`infergate bench`: benchmarks (`infergate bench scheduling ...`)."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from infergate.util.signals import Stopped, run_until_stopped

T = TypeVar("T")
# stopping a run's processes on SIGTERM/Ctrl-C: each gets SIGTERM, then SIGKILL after 10 s
STOP_GRACE_S = 25.0


def _run_until_stopped(main: Coroutine[Any, Any, T]) -> T:
    """``main`` on uvloop; SIGTERM stops it as Ctrl-C does: the processes it started are stopped."""
    import uvloop

    def say(sig: signal.Signals) -> None:
        click.echo(f"received {sig.name}: stopping the benchmark's processes (simulators, EPPs, routers)", err=True)

    try:
        return run_until_stopped(main, grace=STOP_GRACE_S, on_signal=say, loop_factory=uvloop.new_event_loop)
    except Stopped as stop:
        click.echo(f"infergate bench: {stop}", err=True)
        sys.exit(stop.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Run benchmarks (not tests): real processes on loopback, numbers on stdout."""


@command.command("scheduling")
@click.option("--replicas", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Simulator replicas per profile.")
@click.option("--duration", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds of traffic per profile (profiles run one after the other).")
@click.option("--profiles", default="default,round-robin", show_default=True,
              help="Comma-separated EPP scheduling presets: default (= predicted-latency), upstream-v1.0, round-robin, random, prefix-load, v0.3.0.")
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

    result = _run_until_stopped(run_scheduling_bench(config, progress))
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


def _epp_args(text: str) -> tuple[str, ...]:
    """``--epp-args``: split as a shell would, each flag one `infergate epp` accepts."""
    import shlex

    from infergate.cli.epp import command as epp_command  # the EPP's own parser checks the flags

    try:
        args = tuple(shlex.split(text))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--epp-args") from None
    if args:
        try:
            epp_command.make_context("epp", ["--pool-name", "bench", *args])
        except click.ClickException as exc:
            raise click.BadParameter(f"not `infergate epp` flags: {exc.format_message()}",
                                     param_hint="--epp-args") from None
    return args


@command.command("peers")
@click.option("--workloads", default="shared-prefix", show_default=True,
              help="Comma-separated workloads (or 'all'): shared-prefix, shared-prefix-zipf, multi-turn, lora-mix, "
                   "priority-mix, bursty, heterogeneous, long-context.")
@click.option("--routers", default="all", show_default=True,
              help="Comma-separated routers (or 'all'): infergate-<EPP preset>, sglang-cache-aware, "
                   "sglang-round-robin, vllm-router-cache-aware, envoy-round-robin, envoy-least-request, oracle.")
@click.option("--phases", default="open,closed", show_default=True, help="open (seeded arrivals), closed (fixed "
              "concurrency), or both.")
@click.option("--duration", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Wall seconds of traffic per phase and router.")
@click.option("--replicas", type=click.IntRange(2, 64), default=4, show_default=True,
              help="Simulator replicas in the pool (fresh, cold, per router and phase).")
@click.option("--time-scale", type=click.FloatRange(min=0.01), default=0.5, show_default=True,
              help="Simulated model speed (1 = real time). Below 1 keeps CPU headroom on small machines; "
                   "the EPP's metric refresh follows (50 ms of model time). Results are in model time.")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Workload seed (same traffic for every router); with --repeats, repeat i uses seed + i.")
# 20: bench.peers.run.MAX_REPEATS (not imported here: the CLI would load the benchmark at start)
@click.option("--repeats", type=click.IntRange(1, 20), default=1, show_default=True,
              help="Measure every workload/phase N times (repeat i with seed --seed + i: its own traffic and "
                   "simulator seeds, the same for every router of the repeat). The report gives medians and each "
                   "ratio to the best peer/oracle computed per repeat, with its min-max and spread (max/min - 1); "
                   "the per-repeat tables follow. Costs N times the time of one run.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"<workload>/<phase>": {"<router>": {ttft_p50, ttft_p90, ttft_p99, itl_p50, e2e_p90, '
                   'output_tokens_per_s, goodput, requests, failed, shed, prefix_hit}}} instead of the report '
                   '(with --repeats: medians over the repeats; requests, failed and shed summed).')
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write results.md, results.json and PNG plots here (e.g. bench/results/peers).")
@click.option("--epp-args", default="", metavar="FLAGS",
              help="Extra `infergate epp` flags for every infergate router, e.g. "
                   "'--sd-sheddable-max-inflight-per-endpoint 3' (the report states them).")
# 8: bench.peers.routers.MAX_EPP_REPLICAS
@click.option("--epp-replicas", type=click.IntRange(1, 8), default=1, show_default=True,
              help="EPPs active-active behind every infergate router's Envoy, as an EPP Deployment with that "
                   "many pods: each scrapes the pool and keeps its own pick-time state; Envoy spreads the "
                   "requests over them round robin.")
@click.option("--epp-pick-sharing", is_flag=True,
              help="With --epp-replicas > 1: the EPPs share their picks' prefix blocks (`infergate epp "
                   "--pick-sharing-port/--pick-sharing-peers`), so each one's prefix index sees every pick.")
@click.option("--declare-slow-speed-factor", type=click.FloatRange(min=0, min_open=True, max=100), default=None,
              metavar="X",
              help="On workloads with slower replicas (heterogeneous): their pods carry the label "
                   "infergate.io/speed-factor=X in infergate's EPP pool file, as an operator who knows the "
                   "hardware declares it (the default profile reads it). Default: no label.")
def peers(workloads: str, routers: str, phases: str, duration: float, replicas: int, time_scale: float, seed: int,
          repeats: int, as_json: bool, out_dir: Path | None, epp_args: str, epp_replicas: int,
          epp_pick_sharing: bool, declare_slow_speed_factor: float | None) -> None:
    """Compare infergate's EPP profiles with sglang-router, vllm-router, Envoy alone and an oracle.

    Every router runs on the same seeded traffic in front of its own fresh simulated pool.
    Peers come from .bench-venvs/ (made by `make bench`); a peer that is not installed is
    reported as skipped. Writes progress to stderr and the report (or --json) to stdout.
    The report checks issue 16's targets for infergate-default against the same run's best
    peer and oracle, and gives each phase's floor: the TTFT p90 that no router can go below
    on that traffic (docs/bench.md).
    """
    from infergate.bench.peers import report
    from infergate.bench.peers.routers import ALL_ROUTERS
    from infergate.bench.peers.run import PHASES, PeersConfig, run_peers
    from infergate.bench.peers.workloads import GENERATORS

    def pick(value: str, known: tuple[str, ...], hint: str) -> tuple[str, ...]:
        names = known if value.strip() == "all" else tuple(v.strip() for v in value.split(",") if v.strip())
        unknown = [n for n in names if n not in known]
        if not names or unknown:
            raise click.BadParameter(f"unknown {', '.join(unknown) or '(none given)'} (known: {', '.join(known)})",
                                     param_hint=hint)
        return names

    if epp_pick_sharing and epp_replicas < 2:
        raise click.BadParameter("pick sharing is between EPP replicas: give --epp-replicas 2 or more",
                                 param_hint="--epp-pick-sharing")
    config = PeersConfig(workloads=pick(workloads, tuple(GENERATORS), "--workloads"),
                         routers=pick(routers, ALL_ROUTERS, "--routers"), phases=pick(phases, PHASES, "--phases"),
                         duration=duration, time_scale=time_scale, replicas=replicas, seed=seed,
                         epp_args=_epp_args(epp_args), repeats=repeats, epp_replicas=epp_replicas,
                         epp_pick_sharing=epp_pick_sharing, declare_slow_speed_factor=declare_slow_speed_factor)
    result = _run_until_stopped(run_peers(config, lambda text: click.echo(text, err=True), checkpoint=(
        None if out_dir is None else lambda partial: report.write_outputs(partial, out_dir))))
    for name, why in result.skipped.items():
        click.echo(f"skipped {name}: {why}", err=True)
    # a wake-up delay is model time lost x the time scale; a simulated step is 6.5-14 ms of model time
    busy = [run for run in result.runs
            if run.summary is not None and run.summary.sched_delay_ms * time_scale > 0.25]
    if busy:
        click.echo(f"warning: in {len(busy)} of {len(result.runs)} runs the benchmark's threads waited on average "
                   f"more than {0.25 / time_scale:.2f} ms (0.25 ms of model time) for a CPU each time they woke: "
                   f"latencies include host contention; lower --time-scale or run on a quieter machine", err=True)
    if as_json:
        click.echo(json.dumps(report.as_json(result)))
    else:
        click.echo(report.markdown(result))
    if out_dir is not None:
        for path in report.write_outputs(result, out_dir):
            click.echo(f"wrote {path}", err=True)
    sys.stdout.flush()


@command.command("peers-report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Write the merged results.md, results.json, details.json here, with the runs' PNG plots.")
def peers_report(runs: tuple[Path, ...], out_dir: Path) -> None:
    """Merge stored `bench peers` runs into one report (also: re-render one with today's report).

    Each RUN is a directory that `infergate bench peers --out` wrote; its details.json is read
    back. A long benchmark split into streams by --workloads becomes one report, with issue 16's
    targets section over every workload. The runs must have been measured the same way (duration,
    time scale, replicas, seeds, EPP flags and replicas; the workloads, phases and routers may
    differ); a workload/phase/router measured twice is refused. The runs' ttft_cdf_*.png plots are
    copied (details.json keeps no per-request TTFTs); a plot several runs have is left out.
    """
    import shutil

    from infergate.bench.peers import report, stored

    try:
        result = stored.merge([stored.load(path) for path in runs])
    except stored.StoredRunError as exc:
        raise click.ClickException(str(exc)) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[Path]] = {}
    for path in runs:
        for png in sorted(path.glob("ttft_cdf_*.png")):
            found.setdefault(png.name, []).append(png)
    plots: list[str] = []
    for name, pngs in found.items():
        if len(pngs) > 1:  # streams that split one workload/phase's routers: each plot has part of them
            click.echo(f"{name}: in {len(pngs)} runs, each with part of the routers: left out", err=True)
            continue
        if pngs[0].resolve() != (out_dir / name).resolve():
            shutil.copyfile(pngs[0], out_dir / name)
        plots.append(name)
    for path in report.write_outputs(result, out_dir, plots=plots):
        click.echo(f"wrote {path}", err=True)


@command.command("peers-compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON instead of markdown.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the markdown here (e.g. bench/results/peers/<run>/compared.md).")
def peers_compare(runs: tuple[Path, ...], as_json: bool, out_file: Path | None) -> None:
    """Issue 16's ratios of two or more stored `bench peers` runs side by side, with their spread.

    Each RUN is a directory with the details.json that `infergate bench peers --out` or
    `infergate bench peers-report --out` wrote (merge a run's streams with peers-report first).
    Every ratio is taken against that run's own best peer and oracle; the spread is max/min - 1
    over the runs, against the issue's "two runs within 10%". A last section gives each router's
    own TTFT p90 in every run, to tell whose p90 moved a ratio. The runs must have been measured the
    same way except for the seed, with one repeat each.
    """
    from infergate.bench.peers import compare, stored

    if len(runs) < 2:
        raise click.UsageError("give two run directories at least")
    names = [path.name for path in runs]
    labels = names if len(set(names)) == len(names) else [str(path) for path in runs]
    try:
        comparison = compare.compare([(label, stored.load(path)) for label, path in zip(labels, runs, strict=True)])
    except stored.StoredRunError as exc:
        raise click.ClickException(str(exc)) from None
    if not comparison.rows:
        raise click.ClickException("no workload/phase has infergate-default's figures in every run")
    text = compare.markdown(comparison)
    click.echo(json.dumps(comparison.as_json()) if as_json else text.rstrip("\n"))
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text)
        click.echo(f"wrote {out_file}", err=True)


@command.command("added-latency")
@click.option("--duration", type=click.FloatRange(min=1), default=20.0, show_default=True,
              help="Seconds of traffic per path (gateway, direct) and load level.")
@click.option("--levels", default="0.1,0.7", show_default=True,
              help="Comma-separated load levels as fractions of the EPP's capacity measured in the same run.")
@click.option("--replicas", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Simulator replicas (zero model time) in the pool.")
@click.option("--prompt-tokens", type=click.IntRange(8), default=1000, show_default=True)
@click.option("--block-seconds", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="The two paths alternate in blocks this long (same requests, same times).")
@click.option("--capacity-seconds", type=click.FloatRange(min=1), default=6.0, show_default=True,
              help="Length of the closed loop that measures the EPP's CPU per request.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--pin-epp", is_flag=True,
              help="Run the EPP alone on the last CPU and everything else (Envoy, simulator, load generator) on "
                   "the others (taskset), as if the EPP had its own pod.")
@click.option("--note", default="", help="A sentence about the machine's conditions for the report.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write report.md, results.json and added_latency.png here (e.g. bench/results/added-latency).")
def added_latency(duration: float, levels: str, replicas: int, prompt_tokens: int, block_seconds: float,
                  capacity_seconds: float, seed: int, pin_epp: bool, note: str, out_dir: Path | None) -> None:
    """The gateway's added time to first token: through Envoy + the EPP against straight to the model server.

    Simulator replicas with zero model time, the EPP and Envoy (production translators) on
    loopback; the same Poisson request sequence through the gateway and straight to the replica
    the EPP picked, in alternating blocks, at each load level. Progress on stderr, the report
    (markdown) on stdout.
    """
    from infergate.bench.added_latency import AddedLatencyConfig, run_added_latency
    from infergate.bench.added_latency_report import markdown, write

    try:
        fractions = tuple(float(v) for v in levels.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{levels!r}: comma-separated numbers, e.g. 0.1,0.7", param_hint="--levels") from None
    if not fractions or any(not 0 < f <= 1.5 for f in fractions):
        raise click.BadParameter(f"{levels!r}: each level in (0, 1.5]", param_hint="--levels")
    config = AddedLatencyConfig(levels=fractions, duration=duration, replicas=replicas, prompt_tokens=prompt_tokens,
                                block_seconds=block_seconds, capacity_seconds=capacity_seconds, seed=seed,
                                pin_epp=pin_epp)
    result = _run_until_stopped(run_added_latency(config, lambda text: click.echo(text, err=True)))
    click.echo(markdown(result, note))
    if out_dir is not None:
        write(result, out_dir, note)
        click.echo(f"wrote {out_dir}/report.md, results.json, added_latency.png", err=True)
    sys.stdout.flush()
