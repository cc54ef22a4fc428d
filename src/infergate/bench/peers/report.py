"""The peer benchmark's outputs: the ``--json`` object, a markdown report, PNG plots."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from infergate.bench.peers.routers import PEER_ROUTERS
from infergate.bench.peers.run import PeersResult, RunOutcome
from infergate.bench.peers.summary import SLO_ITL_S, SLO_TTFT_S, WARMUP_FRACTION


def as_json(result: PeersResult) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"<workload>/<phase>": {"<router>": {ttft_p50, ..., prefix_hit}}}`` (NaN as null)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for run in result.runs:
        if run.summary is not None:
            out.setdefault(f"{run.workload}/{run.phase}", {})[run.router] = run.summary.as_json()
    return out


def _by_key(result: PeersResult) -> dict[str, list[RunOutcome]]:
    groups: dict[str, list[RunOutcome]] = {}
    for run in result.runs:
        groups.setdefault(f"{run.workload}/{run.phase}", []).append(run)
    return groups


def best_peer(runs: list[RunOutcome], metric: str = "ttft_p90") -> RunOutcome | None:
    """The peer (sglang-router, vllm-router) with the lowest ``metric`` (highest for throughput)."""
    peers = [r for r in runs if r.router in PEER_ROUTERS and r.summary is not None
             and math.isfinite(getattr(r.summary, metric))]
    if not peers:
        return None
    higher = metric in ("output_tokens_per_s", "goodput")
    return (max if higher else min)(peers, key=lambda r: getattr(r.summary, metric))


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and math.isfinite(a) and math.isfinite(b) else "-"


def _s(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "-"


def _pct(value: float) -> str:
    return f"{value:.0%}" if math.isfinite(value) else "-"


def _f1(value: float) -> str:
    return f"{value:.1f}" if math.isfinite(value) else "-"


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
        f"fixed concurrency; seed {cfg.seed}",
        *([f"- infergate's EPPs ran with `{' '.join(cfg.epp_args)}`"] if cfg.epp_args else []),
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
    for key, runs in _by_key(result).items():
        peer = best_peer(runs)
        peer_tp = best_peer(runs, "output_tokens_per_s")
        peer_steady = best_peer(runs, "ttft_p90_steady")
        oracle = next((r for r in runs if r.router == "oracle" and r.summary is not None), None)
        lines += [f"## {key}", "",
                  "| router | TTFT p50 | TTFT p90 | TTFT p99 | TTFT p90 after warm-up | ITL p50 | E2E p90 | out tok/s | goodput | "
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
    for plot in plots or []:
        lines += [f"![{plot}]({plot})", ""]
    return "\n".join(lines)


def write_outputs(result: PeersResult, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    plots: list[str] = []
    with contextlib.suppress(ImportError):
        plots = _plots(result, out)
    (out / "results.json").write_text(json.dumps(as_json(result), indent=2) + "\n")
    (out / "details.json").write_text(json.dumps(details(result), indent=1) + "\n")
    (out / "results.md").write_text(markdown(result, plots))
    return [out / "results.json", out / "details.json", out / "results.md", *(out / p for p in plots)]


def details(result: PeersResult) -> dict[str, Any]:
    """Everything but the per-request TTFTs: the configuration, skipped routers, and per run the
    full summary, affinity, 404s and the endpoints the replicas served (NaN as null)."""
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    runs = []
    for run in result.runs:
        summary = clean(dataclasses.asdict(run.summary)) if run.summary is not None else None
        runs.append(clean({"workload": run.workload, "phase": run.phase, "router": run.router, "summary": summary,
                           "error": run.error, "replicas_per_group": run.replicas_per_group,
                           "load_shares": run.load_shares, "not_found": run.not_found, "calls": run.calls,
                           "log_404_lines": run.log_404_lines, "queue_imbalance": run.queue_imbalance}))
    return {"config": clean(dataclasses.asdict(result.config)), "skipped": result.skipped,
            "workloads": result.descriptions, "runs": runs}


def _plots(result: PeersResult, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names: list[str] = []
    for key, runs in _by_key(result).items():
        if not any(run.ttfts for run in runs):
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for run in runs:
            ttfts = sorted(run.ttfts)
            if ttfts:
                ax.plot(ttfts, [(i + 1) / len(ttfts) for i in range(len(ttfts))], label=run.router)
        ax.set_xscale("log")
        ax.set_xlabel("time to first token (model s)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"TTFT CDF: {key}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"ttft_cdf_{key.replace('/', '_')}.png"
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        names.append(name)
    return names
