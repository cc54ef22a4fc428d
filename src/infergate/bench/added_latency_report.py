"""The added-latency benchmark's report: ``results.json``, ``report.md`` and ``added_latency.png``
from the dictionary ``bench.added_latency.run_added_latency`` returns."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

PROCESSES = ("epp", "envoy", "simulator", "loadgen")


def _ms(seconds: float) -> str:
    return "n/a" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.2f}"


def _verdict(level: dict[str, Any], targets: dict[str, float]) -> str:
    added = level["added"]["added"]
    p50, p99 = added["p50"] * 1000, added["p99"] * 1000
    if level["added"]["meets_targets"]:
        return "met"
    misses = []
    if not p50 <= targets["p50_ms"]:
        misses.append(f"p50 by {p50 - targets['p50_ms']:.2f} ms")
    if not p99 <= targets["p99_ms"]:
        misses.append(f"p99 by {p99 - targets['p99_ms']:.2f} ms")
    return "missed: " + ", ".join(misses)


def caveats(result: dict[str, Any]) -> list[str]:
    """What makes a level's numbers the machine's rather than the gateway's."""
    out = []
    ceiling = result["capacity"]["closed_loop_requests_per_s"]
    for level in result["levels"]:
        name = f"{level['level']:.0%}"
        busy = level["cores"].get("machine_busy", 0.0)
        if level["target_rate"] > ceiling:
            out.append(f"{name}: the offered {level['target_rate']:,.0f} requests/s is above what the whole setup "
                       f"reached on this machine in the closed loop ({ceiling:,.0f}/s): requests queue, and the "
                       "added latency is that queueing, not the gateway's cost per request.")
        if busy > 0.85:
            out.append(f"{name}: the machine was {busy:.0%} busy: the latencies include waiting for a CPU.")
        if level["gateway_rate"] < 0.9 * level["target_rate"]:
            out.append(f"{name}: the gateway path achieved {level['gateway_rate']:,.0f} of the "
                       f"{level['target_rate']:,.0f} requests/s offered.")
    if not out:
        out.append("No level was above the machine's ceiling or ran on a saturated machine.")
    return out


def shares(result: dict[str, Any]) -> list[str]:
    """Envoy's share and the EPP's of the added time (when the run had the Envoy-alone path)."""
    levels = [level for level in result["levels"] if level.get("envoy_only")]
    if not levels:
        return []
    lines = [
        "## Where the added time goes",
        "",
        "*Envoy alone*: the same Envoy listener without the ext_proc filter (same route and pool cluster; its "
        "fallback load balancing picks the replica). Envoy's share = Envoy alone minus direct; the EPP's share = "
        "through the gateway minus Envoy alone (its three ext_proc round trips: request headers, body, response "
        "headers).",
        "",
        "| load | TTFT Envoy alone p50 / p99 ms | Envoy's share p50 / p99 ms | the EPP's share p50 / p99 ms |",
        "|---:|---:|---:|---:|",
    ]
    for level in levels:
        alone, epp = level["envoy_only"], level["epp_share"]
        lines.append(f"| {level['level']:.0%} | {_ms(alone['gateway']['p50'])} / {_ms(alone['gateway']['p99'])} | "
                     f"{_ms(alone['added']['p50'])} / {_ms(alone['added']['p99'])} | {_ms(epp['p50'])} / "
                     f"{_ms(epp['p99'])} |")
    return [*lines, ""]


def markdown(result: dict[str, Any], note: str = "") -> str:
    config, machine, capacity = result["config"], result["machine"], result["capacity"]
    targets = result["targets"]
    lines = [
        "# Added latency of the gateway (issue 12)",
        "",
        "Written by `infergate bench added-latency` (`make bench`); the method is in "
        "`src/infergate/bench/added_latency.py`'s docstring. Time to first token (TTFT) of the same requests "
        "through Envoy + the EPP, through Envoy alone and straight to the simulator replica the EPP picked, in alternating blocks of "
        f"{config['block_seconds']:g} s; the simulator runs with **zero model time**, so the difference is the "
        f"gateway's. Targets: added p50 <= {targets['p50_ms']:g} ms, p99 <= {targets['p99_ms']:g} ms.",
        "",
        f"Machine: {machine['cpus']} CPUs; load average {', '.join(f'{x:.2f}' for x in machine['loadavg_start'])} "
        f"at the start, {', '.join(f'{x:.2f}' for x in machine['loadavg_end'])} at the end. "
        + ("The EPP ran alone on one CPU, Envoy, the simulator and the load generator on the others (`--pin-epp`); "
           "other work on the machine could use any CPU."
           if machine.get("pinned") else
           "Every process of the benchmark (load generator, Envoy with one worker, the EPP, the simulator) shares "
           "these CPUs.") + (f" {note}" if note else ""),
        "",
        f"Workload: {config['replicas']} simulator replicas, ~{config['prompt_tokens']:,}-token prompts (16 shared "
        f"system prompts, unique questions), {config['max_tokens']} output tokens streamed, default EPP profile, "
        f"50 ms scrapes; {config['duration']:g} s of traffic per path and level, Poisson arrivals.",
        "",
        "## The EPP's capacity (measured in this run)",
        "",
        f"A closed loop of {config['capacity_concurrency']} users through the gateway for "
        f"{config['capacity_seconds']:g} s: {capacity['requests']:,} requests, "
        f"**{capacity['cpu_per_request_ms']:.3f} ms of EPP CPU per request** (idle scrape cost of "
        f"{capacity['epp_idle_cores']:.3f} cores subtracted), so one EPP process with a core to itself serves "
        f"**{capacity['requests_per_s']:,.0f} requests/s**. The closed loop itself reached "
        f"{capacity['closed_loop_requests_per_s']:,.0f} requests/s: the whole machine's ceiling for this setup "
        "(client, Envoy, EPP and simulator on the same cores).",
        "",
        "## Added time to first token",
        "",
        "| load | offered req/s | achieved req/s (gateway / direct) | client send lag p99 ms | requests | "
        "TTFT gateway p50 / p90 / p99 ms | TTFT direct p50 / p90 / p99 ms | **added p50 / p90 / p99 ms** | "
        "paired difference p50 / p99 ms | target |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for level in result["levels"]:
        a = level["added"]
        g, d, add, paired = a["gateway"], a["direct"], a["added"], a["paired"]
        failed = a["failed_gateway"] + a["failed_direct"]
        lines.append(
            f"| {level['level']:.0%} | {level['target_rate']:,.0f} | {level['gateway_rate']:,.0f} / "
            f"{level['direct_rate']:,.0f} | {_ms(level['lag_p99_s'])} | {a['pairs']:,}"
            + (f" ({failed} failed)" if failed else "")
            + f" | {_ms(g['p50'])} / {_ms(g['p90'])} / {_ms(g['p99'])} | {_ms(d['p50'])} / {_ms(d['p90'])} / "
            f"{_ms(d['p99'])} | **{_ms(add['p50'])} / {_ms(add['p90'])} / {_ms(add['p99'])}** | "
            f"{_ms(paired['p50'])} / {_ms(paired['p99'])} | {_verdict(level, targets)} |")
    lines += [
        "",
        "*added* = the gateway's TTFT quantile minus the direct one; *paired difference* = quantiles of the "
        "per-request difference (it adds the noise of both paths, so its tail overstates the gateway's).",
        "",
        *[f"- {line}" for line in caveats(result)],
        "",
        *shares(result),
        "![added latency against load](added_latency.png)",
        "",
        "## CPU during each level (cores, over the blocks of every path)",
        "",
        "| load | " + " | ".join(PROCESSES) + " | machine busy |",
        "|---:|" + "---:|" * (len(PROCESSES) + 1),
    ]
    for level in result["levels"]:
        cores = level["cores"]
        lines.append(f"| {level['level']:.0%} | " + " | ".join(f"{cores.get(p, math.nan):.2f}" for p in PROCESSES)
                     + f" | {cores.get('machine_busy', math.nan):.0%} |")
    errors = {k: v for level in result["levels"] for k, v in level.get("errors", {}).items()}
    if errors:
        lines += ["", "Errors: " + "; ".join(f"{k} x{v}" for k, v in sorted(errors.items()))]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = result["levels"]
    x = [level["level"] * 100 for level in levels]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for q, style in (("p50", "o-"), ("p99", "s--")):
        left.plot(x, [lv["added"]["gateway"][q] * 1000 for lv in levels], style, color="#d62728",
                  label=f"through the gateway {q}")
        left.plot(x, [lv["added"]["direct"][q] * 1000 for lv in levels], style, color="#1f77b4",
                  label=f"straight to the simulator {q}")
        if all(lv.get("envoy_only") for lv in levels):
            left.plot(x, [lv["envoy_only"]["gateway"][q] * 1000 for lv in levels], style, color="#2ca02c",
                      label=f"Envoy alone (no EPP) {q}")
        right.plot(x, [lv["added"]["added"][q] * 1000 for lv in levels], style, label=f"added {q}")
    right.axhline(result["targets"]["p50_ms"], color="#2ca02c", linestyle=":", label="target p50")
    right.axhline(result["targets"]["p99_ms"], color="#ff7f0e", linestyle=":", label="target p99")
    left.set(title="TTFT (zero model time)", xlabel="load, % of the EPP's capacity", ylabel="ms")
    right.set(title="gateway's added TTFT", xlabel="load, % of the EPP's capacity", ylabel="ms")
    for ax in (left, right):
        ax.set_yscale("symlog", linthresh=1.0)  # ms: linear below 1 ms (an added latency may be negative)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    lowest = min((lv["added"]["added"][q] * 1000 for lv in levels for q in ("p50", "p99")), default=0.0)
    if not math.isnan(lowest):
        right.set_ylim(bottom=min(0.0, lowest * 1.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result: dict[str, Any], out: Path, note: str = "") -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / "report.md").write_text(markdown(result, note))
    plot(result, out / "added_latency.png")
