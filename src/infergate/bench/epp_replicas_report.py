"""The EPP-replicas benchmark's report: ``report.md`` and ``achieved_vs_offered.png`` from
``results.json`` (written by ``infergate.bench.epp_replicas``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from infergate.bench.epp_replicas_analysis import Step, find_knee

_WORKLOADS = {
    "system_prompts": "system prompts (16 shared 3,000-token prefixes, the epp-cost prompts)",
    "sessions": "sessions (a prefix per conversation, {turns} requests each)",
}


def _shared(run: dict[str, Any]) -> str:
    return ", picks shared" if run.get("pick_sharing") else ""


def run_label(run: dict[str, Any]) -> str:
    """A run's replica count, with ", picks shared" when its replicas shared their picks."""
    return f"{run['replicas']}{_shared(run)}"


def _chart(out: Path, results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    top = 0.0
    for result in results["replicas"]:
        steps = result["steps"]
        offered = [s["offered"] for s in steps]
        achieved = [s["achieved"] for s in steps]
        top = max(top, *offered)
        line = ax.plot(offered, achieved, "o--" if result.get("pick_sharing") else "o-",
                       label=f"{result['replicas']} EPP replica(s){_shared(result)}")[0]
        knee = result["knee"]
        if knee["index"] >= 0:
            ax.plot([offered[knee["index"]]], [achieved[knee["index"]]], "s", color=line.get_color(), markersize=10,
                    fillstyle="none")
    ax.plot([0, top], [0, top], ":", color="grey", linewidth=0.8, label="answered = offered")
    ax.set_xlabel("offered ext_proc requests/s (3,000-token prompts, response body NONE)")
    ax.set_ylabel("answered requests/s")
    ax.set_title(f"EPP replicas active-active, {results['machine']['cpus']} CPUs shared (squares: knee)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "achieved_vs_offered.png", dpi=110)
    plt.close(fig)


def _load(load: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


def _busy(step: dict[str, Any]) -> str:
    if "machine_busy_cores" not in step:
        return "-"
    return f"{step['machine_busy_cores']:.2f} ({step['other_cores']:.2f})"


def _per_core(step: dict[str, Any]) -> float:
    cores = sum(step["epp_cores"])
    return step["achieved"] / cores if cores else 0.0


def _knee_row(result: dict[str, Any]) -> str:
    knee, steps = result["knee"], result["steps"]
    n = run_label(result)
    if knee["index"] < 0:
        return f"| {n} | - | - | - | - | - | - | - | {knee['ceiling']:,.0f} | {knee['reason']} |"
    step = steps[knee["index"]]
    cores = step["epp_cores"]
    per = "/".join(f"{c:.2f}" for c in cores)
    per_core = _per_core(step)
    return (f"| {n} | {step['offered']:,.0f} | {step['achieved']:,.0f} | {step['p50_ms']:.2f} | {step['p99_ms']:.2f} "
            f"| {per} | {step['client_cores']:.2f} | {per_core:,.0f} | {knee['ceiling']:,.0f} | "
            f"{knee['reason'] or 'every step followed'} |")


def report_text(results: dict[str, Any]) -> str:
    machine, settings = results["machine"], results["settings"]
    runs = results["replicas"]
    lines = [
        "# EPP throughput ceiling and replicas (issue 12)",
        "",
        "Written by `python -m infergate.bench.epp_replicas` (`make bench`); method in that module's docstring.",
        "",
        f"Machine: {machine['cpus']} CPUs, load average {_load(machine['load_average_start'])} at the start and "
        f"{_load(machine['load_average_end'])} at the end: the machine is shared with other jobs, so the knees and "
        "ratios below move with their load; the EPP, the client playing Envoy and the metrics server all run on "
        f"these {machine['cpus']} cores. One step lasts {settings['step_seconds']:g} s.",
        "",
        f"Setup: a pool of {settings['endpoints']} model servers (one static metrics server answering for all of "
        "them, the same load on each), default profile, 50 ms scrapes, 3,000-token prompts, request body BUFFERED, "
        "response body NONE (the gateway's default: 3 ext_proc messages each way). The client spreads the streams "
        "over the replicas round robin per stream, as Envoy does over the endpoints of the EPP's Service. "
        "Replicas are active-active: no leader election, each scrapes the pool and keeps its own prefix index. "
        "*Picks shared*: the replicas also publish each pick's prefix blocks to each other (`--pick-sharing-port`, "
        "`--pick-sharing-peers`; docs/epp.md, \"Replicas active-active and pick sharing\"), so every replica's "
        "index and pick-time load include the others' picks.",
        "",
        "## The saturation point",
        "",
        "Per replica count, the knee: the last load step that answered at least 90% of the offered requests/s with "
        "a median decision latency (request body sent -> the EPP's reply naming the endpoint) under 5 times the "
        "unloaded one (or under 5 ms if that is more). *Ceiling*: the most requests/s answered at any step.",
        "",
        "| replicas | offered at the knee (req/s) | answered (req/s) | decision p50 ms | decision p99 ms "
        "| EPP cores at the knee (each) | client cores | req/s per EPP core | ceiling (req/s) | the next step |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
        *(_knee_row(r) for r in runs),
        "",
        "![answered against offered](achieved_vs_offered.png)",
        "",
        "Every step:",
        "",
        "*Machine busy*: cores the whole machine spent busy during the step (`/proc/stat`); *others*: that less "
        "the EPPs, the client and the metrics server (the other jobs on the shared machine).",
        "",
        "| replicas | offered | sent | answered | p50 ms | p99 ms | EPP cores (each) | client cores "
        "| machine busy (others) | errors |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in runs:
        for s in r["steps"]:
            lines.append(f"| {run_label(r)} | {s['offered']:,.0f} | {s['sent']:,.0f} | {s['achieved']:,.0f} | "
                         f"{s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {'/'.join(f'{c:.2f}' for c in s['epp_cores'])} | "
                         f"{s['client_cores']:.2f} | {_busy(s)} | {s['errors']} |")
    single = next((r for r in runs if r["replicas"] == 1), None)
    lines += [
        "",
        "**What 2 cores can show.** One EPP process is one event loop on one core; N replicas can use N cores, but "
        "here they share 2 cores with the client (itself a Python gRPC process that costs about as much per "
        "request as the EPP) and with the other jobs on the machine, so the aggregate ceiling of 2 and 3 replicas "
        "is the machine's, not the replicas'. What carries over to a bigger machine is the *requests/s per EPP "
        "core* at the knee: a replica on its own core should answer about that many, and N replicas on N free "
        "cores about N times it (the replicas share nothing on the request path, so nothing serialises them; "
        "not measured beyond this machine).",
        "",
        "## What the replicas do not share",
        "",
        "### Prefix affinity",
        "",
        "The same sequence of requests sent one at a time to 1, 2 and 3 fresh replicas (round robin per stream). "
        "Each pick is replayed against a simulated prefix cache (unbounded, no eviction): a *hit* is a request sent "
        "to an endpoint that already served a request with its prefix. *Possible*: requests whose prefix some "
        "endpoint already held (the most hits any picker could get). *Copies*: endpoints holding each prefix at the "
        "end (each copy is the prefix's KV blocks computed and held again). *Loss*: the fraction of one EPP's hits "
        "that the replicas do not get.",
        "",
        "| workload | replicas | requests | prefixes | hits | possible | hit rate | hits of possible | copies per prefix "
        "| loss against one EPP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in results["affinity"].items():
        label = _WORKLOADS.get(name, name).format(turns=settings["turns"])
        for row in rows:
            loss = "-" if row["loss_vs_one"] is None or row["replicas"] == 1 else f"{row['loss_vs_one']:.0%}"
            lines.append(f"| {label} | {run_label(row)} | {row['requests']} | {row['prefixes']} | {row['hits']} | "
                         f"{row['possible']} | {row['hit_rate']:.1%} | {row['hit_rate_of_possible']:.1%} | "
                         f"{row['copies_per_prefix']:.2f} | {loss} |")
    lines += [
        "",
        "Why this measure and not \"the same endpoint as one EPP would pick\": the first request of a prefix goes "
        "to an endpoint chosen among equals at random, so two runs of the *same* single EPP would disagree on "
        "most picks without any loss of affinity; what costs the model servers is a request landing where its "
        "prefix is not cached, which the simulated cache counts directly. Each replica learns a prefix only from "
        "its own requests: with N replicas round robin, a prefix's first request *at each replica* is placed "
        "without knowing where the others put it, so it is cached up to N times and the later requests at that "
        "replica follow its own copy. With few long-lived prefixes (system prompts) the loss is a warm-up cost "
        "that fades with traffic; with short conversations it is a large share of all requests.",
        "",
        "In this benchmark every model server reports the same load, so the default profile's queue and KV-cache "
        "scorers tie and each replica places new prefixes on the endpoint it has already sent the model to (the "
        "prefix index's first hash is the model's, shared by every prompt of the model): a replica's copies "
        "concentrate on one endpoint. Under real, uneven load the replicas' first picks spread over the pool and "
        "a replica lands on another replica's copy only by chance (about 1 in the pool's size), so the loss is at "
        "least what is shown here.",
        "",
        *_sharing_summary(results),
        "### Scrape load on the model servers",
        "",
        "| replicas | scrapes/s answered (pool) | per model server | expected (N x 20/s per server) | metrics server cores "
        "| EPP idle cores (each) |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        lines.append(f"| {run_label(r)} | {r['scrapes_per_s']:,.0f} | {r['scrapes_per_s_per_model_server']:.1f} | "
                     f"{r['scrapes_per_s_expected'] / settings['endpoints']:.0f} | "
                     f"{r['idle_metrics_server_cores']:.3f} | {'/'.join(f'{c:.3f}' for c in r['idle_epp_cores'])} |")
    lines += [
        "",
        "Every replica scrapes every model server every 50 ms: N replicas, N times the scrapes (and N times the "
        "idle scrape CPU, one share per replica).",
        "",
        "## Active-active or active-passive",
        "",
        "- **Active-active** (what is measured here; `replicas: N` without leader election): every replica serves, "
        "the ceiling grows with the replicas' cores; each replica scrapes the pool (N times the scrape load) and "
        "keeps its own prefix index and in-flight counts (prefix affinity loss above; the in-flight-aware scorers "
        "see only 1/N of the requests), unless the replicas share their picks (`--pick-sharing-port`): then each "
        "replica's index and pick-time load include the others' picks, at the CPU of applying them.",
        "- **Active-passive** (`--ha-enable-leader-election`, upstream's v1.5 chart turns it on when replicas > 1): "
        "only the leader is ready, so the Service sends every stream to it: the ceiling stays one process's, there "
        "is no affinity loss, and the followers keep their datastore and metrics warm (they scrape too: N times "
        "the scrape load as well). It buys fail-over (docs/epp.md, \"Readiness, health and high availability\"), "
        "not throughput.",
    ]
    if single and single["knee"]["index"] >= 0:
        step = single["steps"][single["knee"]["index"]]
        lines += [
            "",
            f"**In short**: one EPP process answered {step['achieved']:,.0f} req/s at its knee on this shared machine "
            f"using {sum(step['epp_cores']):.2f} of a core (the machine was busy "
            f"{step.get('machine_busy_cores', 0.0):.2f} of {machine['cpus']} cores; ceiling "
            f"{single['knee']['ceiling']:,.0f} req/s), about {_per_core(step):,.0f} req/s per core of EPP CPU: on "
            "a machine where each replica has a core of its own, expect about that many per replica. Beyond one "
            "process, run replicas active-active behind the pool's Service with pick sharing (the affinity kept, at the "
            "CPU of applying the other replicas' picks) or without it (the affinity loss above), and accept the N-fold "
            "scrapes; leader election (active-passive) adds fail-over, not throughput.",
        ]
    return "\n".join(lines) + "\n"


def _sharing_summary(results: dict[str, Any]) -> list[str]:
    """What pick sharing wins back (affinity) and costs (the knee), per replica count measured both ways."""
    runs = {(r["replicas"], bool(r.get("pick_sharing"))): r for r in results["replicas"]}
    counts = sorted(n for n, shared in runs if shared and (n, False) in runs)
    if not counts:
        return []
    lines = ["**With pick sharing.** A replica learns where the others placed a prefix from their picks, so its "
             "first request of a prefix follows the other replicas' copy instead of starting one of its own:"]
    for n in counts:
        parts = []
        for name, rows in results["affinity"].items():
            by_run = {(row["replicas"], bool(row.get("pick_sharing"))): row for row in rows}
            alone, shared = by_run.get((n, False)), by_run.get((n, True))
            if alone and shared and alone["loss_vs_one"] is not None and shared["loss_vs_one"] is not None:
                parts.append(f"{name.replace('_', ' ')}: loss {alone['loss_vs_one']:.0%} -> {shared['loss_vs_one']:.0%}"
                             f", copies per prefix {alone['copies_per_prefix']:.2f} -> "
                             f"{shared['copies_per_prefix']:.2f}")
        knees = []
        for shared in (False, True):
            knee = runs[(n, shared)]["knee"]
            knees.append(f"{knee['ceiling']:,.0f}")
        lines.append(f"- {n} replicas: {'; '.join(parts)}; ceiling {knees[0]} -> {knees[1]} req/s (each replica "
                     "also applies every other replica's picks to its index: N replicas, N times the index work).")
    lines.append("")
    return lines


def with_knees(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` with every run's knee found again from its steps (the criteria may have changed)."""
    for run in results["replicas"]:
        steps = [Step(s["offered"], s["sent"], s["achieved"], s["p50_ms"], s["p99_ms"]) for s in run["steps"]]
        run["knee"] = asdict(find_knee(steps))
    return results


def write_report(out: Path) -> None:
    results = with_knees(json.loads((out / "results.json").read_text()))
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")  # the knees as reported
    (out / "report.md").write_text(report_text(results))
    _chart(out, results)
