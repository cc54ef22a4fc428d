"""The peer benchmark's outputs: the ``--json`` object, a markdown report, PNG plots.

With ``--repeats N`` (N > 1) every workload/phase was measured N times, repeat i with seed
``--seed + i``. Then:

- ``as_json`` keeps its shape; each figure is the MEDIAN over the router's repeats that ran, except
  the counts ``requests``, ``failed`` and ``shed``, which are SUMS over them (so a failure in any
  repeat shows, and failed / requests stays the failure fraction). A repeat in which the router
  failed to run has no numbers: the markdown says so and details.json has its error.
- the markdown gives, per workload/phase, a summary first: per router the medians and, for each
  ratio against the best peer and the oracle, the median of the PER-REPEAT ratios (each repeat
  compared with its own best peer and oracle: a same-run comparison), their min-max and spread
  (max/min - 1); then every repeat's full table, titled with its seed.
- the TTFT CDF plot pools the TTFTs of all the router's repeats (its title says so).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infergate.bench.peers import targets
from infergate.bench.peers.floor import JITTER_SIGMAS, run_floors
from infergate.bench.peers.run import RATES_IN_WINDOW, PeersConfig, PeersResult, RunOutcome
from infergate.bench.peers.summary import JSON_FIELDS, SLO_ITL_S, SLO_TTFT_S, WARMUP_FRACTION, Summary
from infergate.bench.peers.targets import best_peer, per_repeat_ratios, spread
from infergate.bench.peers.targets import oracle as _oracle

# summed over repeats in the --json object (every other figure is the median over repeats)
SUMMED_FIELDS = ("requests", "failed", "shed")


def as_json(result: PeersResult) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"<workload>/<phase>": {"<router>": {ttft_p50, ..., prefix_hit}}}`` (NaN as null). Over
    repeats: each figure is the median of the router's repeats that ran, ``requests``, ``failed``
    and ``shed`` their sum (with one repeat: that run's figures)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for key, runs in result.by_phase().items():
        summaries: dict[str, list[Summary]] = {}
        for run in runs:
            if run.summary is not None:
                summaries.setdefault(run.router, []).append(run.summary)
        if summaries:
            out[key] = {router: _combined_json(items) for router, items in summaries.items()}
    return out


def _combined_json(summaries: list[Summary]) -> dict[str, Any]:
    if len(summaries) == 1:
        return summaries[0].as_json()
    data: dict[str, Any] = {}
    for name in JSON_FIELDS:
        values = [getattr(s, name) for s in summaries]
        if name in SUMMED_FIELDS:
            data[name] = sum(values)
        else:
            value = _median(values)
            data[name] = value if math.isfinite(value) else None
    return data


def _median(values: list[float]) -> float:
    """The median of the finite values (NaN when there are none)."""
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def _seed(result: PeersResult, run: RunOutcome) -> int:
    return run.seed if run.seed is not None else result.config.seed


def _by_seed(result: PeersResult, runs: list[RunOutcome]) -> dict[int, list[RunOutcome]]:
    """The runs of one workload/phase per repeat, every configured seed included (a seed that has
    not run yet maps to no runs), in the repeats' order."""
    groups: dict[int, list[RunOutcome]] = {seed: [] for seed in result.config.seeds}
    for run in runs:
        groups.setdefault(_seed(result, run), []).append(run)
    return groups


def _floor_text(key: str, floors: dict[int, float]) -> str:
    values = ", ".join(f"{v:.3f} s" + (f" (seed {seed})" if len(floors) > 1 else "") for seed, v in floors.items())
    how = ("its arrival, what earlier requests could have cached by then" if key.endswith("/open") else
           "the first wave (every user's first request at t = 0, nothing cached) and, for every later request, "
           "what no earlier one has; the least over the request counts the routers served")
    return (f"Floor under any router's TTFT p90 on this traffic: {values} (`infergate.bench.peers.floor`: each "
            f"request's least time to first token, from {how}, and the simulator's step-time model, every step "
            f"{JITTER_SIGMAS:g} standard deviations of its jitter fast)")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and math.isfinite(a) and math.isfinite(b) else "-"


def _s(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "-"


def _pct(value: float) -> str:
    return f"{value:.0%}" if math.isfinite(value) else "-"


def _f1(value: float) -> str:
    return f"{value:.1f}" if math.isfinite(value) else "-"


def _closed_loop_rates_text(cfg: PeersConfig) -> str:
    if cfg.closed_loop_rates == RATES_IN_WINDOW:
        return (f"- closed loops' output tokens/s and goodput count what arrived within the phase's {cfg.duration:g} s "
                "(tokens received, requests ended) over those seconds; the turns in flight at the end finish and "
                "count in the latencies")
    return ("- closed loops' output tokens/s and goodput were rated over the time until the phase's last turn "
            "ended (the method before session 23: the drain after the deadline, with ever fewer users, counted "
            "as phase time)")


def markdown(result: PeersResult, plots: list[str] | None = None) -> str:
    cfg = result.config
    lines = [
        "# Peer benchmark: infergate vs sglang-router, vllm-router, Envoy alone and an oracle",
        "",
        f"- pool: {cfg.replicas} simulated replicas (`infergate sim`, `llama-3.1-8b-a100-40gb`, 2,500 KV blocks "
        "of 16 tokens each unless the workload says otherwise), fresh and cold for every router and phase",
        f"- time scale {cfg.time_scale} (the simulated model runs {1 / cfg.time_scale:g}x slower than real time "
        "to keep CPU headroom; the EPP's metric refresh is scaled with it, 50 ms of model time); every figure "
        "below is in model time",
        f"- {cfg.duration:g} s of wall time per phase; open loop = the workload's seeded arrivals, closed loop = "
        f"fixed concurrency; {_seeds_text(cfg.seeds)}",
        _closed_loop_rates_text(cfg),
        *([f"- infergate's EPPs ran with `{' '.join(cfg.epp_args)}`"] if cfg.epp_args else []),
        *([f"- infergate: {cfg.epp_replicas} EPP replicas active-active per router (each scrapes the pool and "
           "keeps its own pick-time state; Envoy's ext_proc cluster spreads the requests over them round robin)"
           + ("; they share their picks' prefix blocks (pick sharing)" if cfg.epp_pick_sharing else
              "; no pick sharing: each replica's prefix index sees only its own picks")]
          if cfg.epp_replicas > 1 else []),
        *([f"- the pool's slower replicas declare `infergate.io/speed-factor: {cfg.declare_slow_speed_factor:g}` "
           "(a pod label in infergate's EPP pool file: what an operator who knows the hardware sets; the "
           "peers have no such input, the oracle reads the true step times)"]
          if cfg.declare_slow_speed_factor is not None else []),
        f"- goodput: requests per model second with TTFT <= {SLO_TTFT_S} s and mean ITL <= {SLO_ITL_S * 1000:g} ms",
        f"- TTFT p90 after warm-up: of the turns sent after the phase's first {WARMUP_FRACTION:.0%} (every router "
        "starts cold, and a closed loop starts all its users at once: its first turns are one cold burst, in "
        "multi-turn about 10% of the requests, right at the p90)",
        "- prefix hit: the replicas' `vllm:prefix_cache_hits / vllm:prefix_cache_queries`; router CPU: CPU "
        "seconds of the router's processes (Envoy + EPP for infergate) per request; replicas/group: distinct "
        "replicas that served each prefix group, on average (1 = perfect affinity); max load share: the busiest "
        "replica's fraction of the requests; queues differ: fraction of 50 ms samples (model time) in which the "
        "replicas' waiting queues were not all equal",
        "- CPU headroom (`infergate.bench.peers.cpu`): machine busy = the whole machine, other jobs included; "
        "bench cores = CPU seconds per wall second of the run's own processes (simulators, router, load "
        "generator); CPU wait = of the time those processes' threads were runnable, the fraction they waited "
        "for a core (run-queue time from /proc/<pid>/task/*/schedstat); ms per wake-up = their mean run-queue "
        "wait per timeslice, wall ms (times the time scale: model time lost per wake-up; a simulated step is "
        "6.5-14 ms of model time): near 0, the latencies are the router's and the model's, however busy the "
        "machine was",
        "",
    ]
    if result.skipped:
        lines += ["Skipped routers:", ""] + [f"- {name}: {why}" for name, why in result.skipped.items()] + [""]
    for name, description in result.descriptions.items():
        lines.append(f"- **{name}**: {description}")
    lines.append("")
    if cfg.repeats > 1:
        lines += [f"Every workload/phase ran {cfg.repeats} times (seeds {cfg.seeds[0]}-{cfg.seeds[-1]}; repeat i uses seed "
                  "--seed + i for the traffic and the simulators, and every router of a repeat gets the same "
                  "traffic). Each summary's ratios are computed PER REPEAT, against that repeat's best peer and "
                  "oracle (a same-run comparison), then given as their median (min-max, spread = max/min - 1); "
                  "the issue's \"two runs give ratios within 10% of each other\" asks for a spread of at most 10%. "
                  "Figures are medians over the repeats (min-max); failed and shed requests are summed. The "
                  "per-repeat tables follow each summary.", ""]
    phases = result.by_phase()
    by_seeds = {key: _by_seed(result, runs) for key, runs in phases.items()}
    floors = {key: run_floors(cfg, key, by_seed) for key, by_seed in by_seeds.items()}
    lines += targets.markdown([targets.evaluate(key, by_seed, ttft_p90_floors=floors[key])
                               for key, by_seed in by_seeds.items()], cfg.repeats)
    for key, runs in phases.items():
        lines += [f"## {key}", ""]
        if floors[key]:
            lines += [_floor_text(key, floors[key]), ""]
        if cfg.repeats == 1:
            lines += _table(runs)
            continue
        by_seed = by_seeds[key]
        lines += _repeats_summary(by_seed)
        for seed, seed_runs in by_seed.items():
            lines += [f"### {key}, seed {seed}", ""]
            lines += _table(seed_runs) if seed_runs else ["Not run.", ""]
    for plot in plots or []:
        lines += [f"![{plot}]({plot})", ""]
    return "\n".join(lines)


def _seeds_text(seeds: tuple[int, ...]) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return f"{len(seeds)} repeats, seeds {seeds[0]}-{seeds[-1]}"


def _ratio_cell(ratios: list[float], repeats: int) -> str:
    if not ratios:
        return "-"
    if len(ratios) == 1:
        return f"{ratios[0]:.2f}x (1 of {repeats} repeats)"
    cell = (f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}x, "
            f"spread {_pct(spread(ratios))})")
    return cell[:-1] + f"; {len(ratios)} of {repeats} repeats)" if len(ratios) < repeats else cell


def _value_cell(values: list[float], repeats: int, fmt: Callable[[float], str]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "-"
    extra = [f"{fmt(min(finite))}-{fmt(max(finite))}"] if len(finite) > 1 else []
    if len(finite) < repeats:
        extra.append(f"{len(finite)} of {repeats} repeats")
    return fmt(statistics.median(finite)) + (f" ({'; '.join(extra)})" if extra else "")


# (column title, Summary field, its format): each with its per-repeat ratios to the best peer and the oracle
_SUMMARY_METRICS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("TTFT p90", "ttft_p90", _s),
    ("TTFT p90 after warm-up", "ttft_p90_steady", _s),
    ("out tok/s", "output_tokens_per_s", lambda v: f"{v:.0f}"),
)


def _repeats_summary(by_seed: dict[int, list[RunOutcome]]) -> list[str]:
    """Per router over the repeats: median figures (min-max) and the per-repeat ratios against
    that repeat's best peer and oracle (median, min-max, spread); what is missing, and why."""
    repeats = len(by_seed)
    routers = list(dict.fromkeys(r.router for runs in by_seed.values() for r in runs))
    header = ["router", "repeats with numbers"]
    for title, _, _ in _SUMMARY_METRICS:
        header += [f"{title} (median)", f"{title} / best peer", f"{title} / oracle"]
    header += ["failed requests (sum)", "shed (sum)"]
    lines = [f"Summary over {repeats} repeats (per-repeat ratios: median (min-max, spread)):", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    notes: list[str] = []
    for router in routers:
        ran: dict[int, Summary] = {}
        problems: list[str] = []
        for seed, runs in by_seed.items():
            run = next((r for r in runs if r.router == router), None)
            if run is None:
                problems.append(f"seed {seed} not run")
            elif run.summary is None:
                problems.append(f"seed {seed} failed to run ({run.error})")
            else:
                ran[seed] = run.summary
        if problems:
            notes.append(f"- **{router}**: {'; '.join(problems)}: its medians and ratios are over the "
                         f"{len(ran)} of {repeats} repeats with numbers, not {repeats}.")
        cells = [router, f"{len(ran)} of {repeats}" if len(ran) < repeats else str(repeats)]
        for _, metric, fmt in _SUMMARY_METRICS:
            cells.append(_value_cell([getattr(s, metric) for s in ran.values()], repeats, fmt))
            for reference in (best_peer, _oracle):
                ratios = per_repeat_ratios(by_seed, router, metric, reference)
                cells.append(_ratio_cell(list(ratios.values()), repeats))
        for count in ("failed", "shed"):
            per_seed = {seed: getattr(s, count) for seed, s in ran.items()}
            total = sum(per_seed.values())
            where = ", ".join(f"seed {seed}: {n}" for seed, n in per_seed.items() if n)
            cells.append(f"{total} ({where})" if total else str(total))
            if count == "failed" and total:
                notes.append(f"- **{router}**: failed requests ({where}); its medians and ratios include "
                             "those repeats.")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    best = {seed: best_peer(runs) for seed, runs in by_seed.items()}
    best_tp = {seed: best_peer(runs, "output_tokens_per_s") for seed, runs in by_seed.items()}
    if any(best.values()):
        lines.append("Best peer per repeat, by TTFT p90: "
                     + ", ".join(f"seed {seed} {run.router if run else '(none)'}" for seed, run in best.items())
                     + "; by output tokens/s: "
                     + ", ".join(f"seed {seed} {run.router if run else '(none)'}" for seed, run in best_tp.items())
                     + ".")
        missing = [seed for seed, run in best.items() if run is None]
        if missing:
            notes.append(f"- no peer has numbers in seed(s) {', '.join(map(str, missing))}: the ratios against "
                         "the best peer leave those repeats out.")
    oracles = {seed: _oracle(runs, "") for seed, runs in by_seed.items()}
    if any(oracles.values()) and not all(oracles.values()):
        missing = [seed for seed, run in oracles.items() if run is None]
        notes.append(f"- the oracle has no numbers in seed(s) {', '.join(map(str, missing))}: the ratios against "
                     "the oracle leave those repeats out.")
    lines.append("")
    if notes:
        lines += ["Failed or missing repeats:", "", *notes, ""]
    return lines


def _table(runs: list[RunOutcome]) -> list[str]:
    """One run of a workload/phase per router: the full table, the best peer, 404s and probes."""
    lines: list[str] = []
    peer = best_peer(runs)
    peer_tp = best_peer(runs, "output_tokens_per_s")
    peer_steady = best_peer(runs, "ttft_p90_steady")
    oracle = next((r for r in runs if r.router == "oracle" and r.summary is not None), None)
    lines += ["| router | TTFT p50 | TTFT p90 | TTFT p99 | TTFT p90 after warm-up | ITL p50 | E2E p90 | out tok/s | goodput | "
              "requests | failed | shed | prefix hit | replicas/group | max load share | queues differ | router CPU ms/req | "
              "machine busy | bench cores | CPU wait | ms per wake-up | TTFT p90 / best peer | TTFT p90 / oracle | "
              "after warm-up / best peer | tok/s / best peer | tok/s / oracle |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        s = run.summary
        if s is None:
            lines.append(f"| {run.router} | failed to run: {run.error} |" + " |" * 24)
            continue
        vs_peer = _ratio(s.ttft_p90, peer.summary.ttft_p90) if peer and peer.summary else "-"
        vs_oracle = _ratio(s.ttft_p90, oracle.summary.ttft_p90) if oracle and oracle.summary else "-"
        tp_peer = (_ratio(s.output_tokens_per_s, peer_tp.summary.output_tokens_per_s)
                   if peer_tp and peer_tp.summary else "-")
        tp_oracle = (_ratio(s.output_tokens_per_s, oracle.summary.output_tokens_per_s)
                     if oracle and oracle.summary else "-")
        steady_peer = (_ratio(s.ttft_p90_steady, peer_steady.summary.ttft_p90_steady)
                       if peer_steady and peer_steady.summary else "-")
        lines.append(
            f"| {run.router} | {_s(s.ttft_p50)} | {_s(s.ttft_p90)} | {_s(s.ttft_p99)} | {_s(s.ttft_p90_steady)} | "
            f"{s.itl_p50 * 1000:.1f} ms | {_s(s.e2e_p90)} | {s.output_tokens_per_s:.0f} | {s.goodput:.2f} | "
            f"{s.requests} | {s.failed} | {s.shed} | {_pct(s.prefix_hit)} | {_f1(run.replicas_per_group)} | "
            f"{_pct(max(run.load_shares.values(), default=math.nan))} | {_pct(run.queue_imbalance)} | "
            f"{s.router_cpu_s_per_request * 1000:.2f} | {_pct(s.machine_busy)} | {s.bench_cores:.2f} | {_pct(s.cpu_wait)} | {s.sched_delay_ms:.2f} | {vs_peer} | {vs_oracle} | {steady_peer} | {tp_peer} | {tp_oracle} |")
    lines.append("")
    if peer is not None:
        lines.append(f"Best peer by TTFT p90: {peer.router}"
                     + (f"; by output tokens/s: {peer_tp.router}." if peer_tp else "."))
    notes = [f"{run.router}: replicas answered 404 to {run.not_found}" for run in runs if run.not_found]
    notes += [f"{run.router}: {run.log_404_lines} log lines mention 404" for run in runs if run.log_404_lines]
    lines += ["", "404s: " + ("; ".join(notes) if notes else "none (replicas and router logs)"), ""]
    probes = []
    for run in runs:
        other = [f"{k} x{n}" for k, n in sorted(run.calls.items())
                 if not k.endswith(("/v1/completions", "/v1/chat/completions"))]
        if other:
            probes.append(f"{run.router}: " + ", ".join(other))
    if probes:
        lines += ["Other endpoints the replicas served, per router: " + "; ".join(probes), ""]
    return lines


def write_outputs(result: PeersResult, out: Path, plots: list[str] | None = None) -> list[Path]:
    """results.json, details.json, results.md and the TTFT CDF plots in ``out``; ``plots``: PNGs
    already in ``out`` to show instead of drawing them (a stored result has no TTFTs to draw)."""
    out.mkdir(parents=True, exist_ok=True)
    if plots is None:
        plots = []
        with contextlib.suppress(ImportError):
            plots = _plots(result, out)
    (out / "results.json").write_text(json.dumps(as_json(result), indent=2) + "\n")
    (out / "details.json").write_text(json.dumps(details(result), indent=1) + "\n")
    (out / "results.md").write_text(markdown(result, plots))
    return [out / "results.json", out / "details.json", out / "results.md", *(out / p for p in plots)]


def details(result: PeersResult) -> dict[str, Any]:
    """Everything but the per-request TTFTs: the configuration, skipped routers, and per run (each
    repeat's apart, with its seed) the full summary, affinity, 404s and the endpoints the replicas served (NaN as null)."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    runs = []
    for run in result.runs:
        summary = clean(dataclasses.asdict(run.summary)) if run.summary is not None else None
        runs.append(clean({"workload": run.workload, "phase": run.phase, "router": run.router,
                           "seed": _seed(result, run), "summary": summary,
                           "error": run.error, "replicas_per_group": run.replicas_per_group,
                           "load_shares": run.load_shares, "not_found": run.not_found, "calls": run.calls,
                           "log_404_lines": run.log_404_lines, "queue_imbalance": run.queue_imbalance}))
    return {"config": clean(dataclasses.asdict(result.config)), "skipped": result.skipped,
            "workloads": result.descriptions, "runs": runs}


def plot_title(result: PeersResult, key: str, runs: list[RunOutcome]) -> str:
    """The CDF plot's title; with repeats it pools every repeat's TTFTs per router, and says so."""
    if result.config.repeats == 1:
        return f"TTFT CDF: {key}"
    seeds = sorted({_seed(result, run) for run in runs if run.ttfts})
    return f"TTFT CDF: {key}, {len(seeds)} repeats pooled (seeds {', '.join(map(str, seeds))})"


def _plots(result: PeersResult, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: list[str] = []
    for key, runs in result.by_phase().items():
        if not any(run.ttfts for run in runs):
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        pooled: dict[str, list[float]] = {}  # with repeats: every repeat's TTFTs of the router together
        for run in runs:
            pooled.setdefault(run.router, []).extend(run.ttfts)
        for router, values in pooled.items():
            ttfts = sorted(values)
            if ttfts:
                ax.plot(ttfts, [(i + 1) / len(ttfts) for i in range(len(ttfts))], label=router)
        ax.set_xscale("log")
        ax.set_xlabel("time to first token (model s)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(plot_title(result, key, runs))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"ttft_cdf_{key.replace('/', '_')}.png"
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        names.append(name)
    return names
