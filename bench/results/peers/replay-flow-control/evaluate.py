"""Decision replay of the default profile with and without the EPP's flow control, every workload.

``nice -n 19 .venv/bin/python bench/results/peers/replay-flow-control/evaluate.py run OUT.jsonl
[--variants default,default+fc,oracle] [--workloads a,b] [--duration 30] [--seed 11] [--seeds 5]``
appends one JSON line per (workload, phase, variant, seed) to OUT.jsonl (the replays one at a
time, in-process); ``table OUT.jsonl[,MORE.jsonl] [--variants ...] [--seed S --seeds N]`` prints the median and
range over the seeds; ``wide`` one row per workload/phase with each variant's median TTFT p90 and
goodput. A variant is a name from ``VARIANTS``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infergate.bench.peers.replay import EppPolicy, ReplayResult, VirtualTimeLoop, _replay, replay
from infergate.bench.peers.workloads import GENERATORS, Workload, make
from infergate.epp.flowcontrol import FlowControlConfig
from infergate.epp.saturation import SaturationConfig
from infergate.epp.scheduling import Candidate
from infergate.epp.scheduling.config import PRESETS


def _epp(flow: bool, **limits: Any) -> Callable[[Workload, int, float | None], ReplayResult]:
    def run(workload: Workload, seed: int, closed_s: float | None) -> ReplayResult:
        return replay(workload, "default", seed, closed_s, flow_control=flow, saturation=SaturationConfig(**limits))
    return run


class _HoldOnly(EppPolicy):
    """Diagnostic, not the EPP: flow control's hold without its placement rule (the scheduler picks
    among every endpoint, as with flow control off), to tell the hold's effect from the rule's."""

    def _placement(self, pool: Any, cands: list[Candidate], now: float) -> list[Candidate]:
        return cands


def _hold_only_with(**limits: Any) -> Callable[[Workload, int, float | None], ReplayResult]:
    def run(workload: Workload, seed: int, closed_s: float | None) -> ReplayResult:
        loop = VirtualTimeLoop()
        try:
            policy = _HoldOnly("default+fc hold only", PRESETS["default"], seed, loop.time,
                               saturation=SaturationConfig(**limits), flow_control=FlowControlConfig(enabled=True))
            return loop.run_until_complete(_replay(workload, policy, seed, closed_s))
        finally:
            loop.close()
    return run


_hold_only = _hold_only_with()


VARIANTS: dict[str, Callable[[Workload, int, float | None], ReplayResult]] = {
    "default": _epp(False),
    "default+fc": _epp(True),
    "default+fc T=4096": _epp(True, max_pending_prefill_tokens=4096),
    "default+fc T=8192": _epp(True, max_pending_prefill_tokens=8192),
    "default+fc T=0": _epp(True, max_pending_prefill_tokens=0),
    "default+fc T=1024": _epp(True, max_pending_prefill_tokens=1024),
    "default+fc Q=0": _epp(True, queue_depth_threshold=0),
    "default+fc Q=1": _epp(True, queue_depth_threshold=1),
    "default+fc Q=0 T=8192": _epp(True, queue_depth_threshold=0, max_pending_prefill_tokens=8192),
    "default+fc hold only": _hold_only,
    "default+fc hold only T=1024": _hold_only_with(max_pending_prefill_tokens=1024),
    "default+fc hold only T=4096": _hold_only_with(max_pending_prefill_tokens=4096),
    "oracle": lambda w, seed, closed_s: replay(w, "oracle", seed, closed_s),
}


def row(r: ReplayResult) -> dict[str, Any]:
    held = [o.held for o in r.outcomes]
    return {"ttft_p90": r.ttft(90), "ttft_p90_warm": r.ttft_after_warmup(90), "ttft_p50": r.ttft(50),
            "ttft_p99": r.ttft(99), "tok_s": r.tokens_per_s, "goodput": r.goodput, "served": len(r.measured),
            "shed": len(r.shed), "fc429": r.flow_control_429, "prefix_hit": r.prefix_hit,
            "held_mean": sum(held) / len(held) if held else 0.0, "held_max": max(held, default=0.0),
            "held_count": sum(1 for h in held if h > 0)}


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    for name in args.workloads.split(","):
        for closed in (False, True):
            for seed in range(args.seed, args.seed + args.seeds):
                workload = make(name, args.duration, seed, 4, closed=closed)
                for variant in args.variants.split(","):
                    r = VARIANTS[variant](workload, seed, args.duration if closed else None)
                    line = {"workload": name, "phase": "closed" if closed else "open", "variant": variant,
                            "seed": seed, **row(r)}
                    with out.open("a") as f:
                        f.write(json.dumps(line) + "\n")
                    print(json.dumps(line), flush=True)


def _fmt(values: list[float], digits: int) -> str:
    med = statistics.median(values)
    return f"{med:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def table(args: argparse.Namespace) -> None:
    rows_by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path in args.out.split(","):  # a replay is deterministic: the same key twice is the same row
        for line in Path(path).read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows_by_key[(r["workload"], r["phase"], r["variant"], r["seed"])] = r
    rows = list(rows_by_key.values())
    if args.workloads != ",".join(GENERATORS):
        rows = [r for r in rows if r["workload"] in args.workloads.split(",")]
    rows = [r for r in rows if args.seed <= r["seed"] < args.seed + args.seeds]
    variants = args.variants.split(",")
    keys = sorted({(r["workload"], r["phase"]) for r in rows}, key=lambda k: (list(GENERATORS).index(k[0]), k[1]))
    print("| workload/phase | variant | TTFT p90 (s) | p90 after warm-up (s) | out tok/s | goodput (req/s) | "
          "429s per seed (of them flow control's, all seeds) | prefix hit | held per seed, mean hold (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for workload, phase in keys:
        for variant in variants:
            sel = [r for r in rows if (r["workload"], r["phase"], r["variant"]) == (workload, phase, variant)]
            if not sel:
                continue
            sel.sort(key=lambda r: r["seed"])
            sheds = "/".join(str(r["shed"]) for r in sel)
            fc = sum(r["fc429"] for r in sel)
            held = sum(r["held_count"] for r in sel) / len(sel)
            held_mean = statistics.mean(r["held_mean"] for r in sel)
            print(f"| {workload}/{phase} | {variant} | {_fmt([r['ttft_p90'] for r in sel], 3)} | "
                  f"{_fmt([r['ttft_p90_warm'] for r in sel], 3)} | {_fmt([r['tok_s'] for r in sel], 0)} | "
                  f"{_fmt([r['goodput'] for r in sel], 2)} | {sheds} ({fc}) | "
                  f"{statistics.median(r['prefix_hit'] for r in sel):.0%} | {held:.0f}, {held_mean:.3f} |")


def wide(args: argparse.Namespace) -> None:
    """One row per workload/phase, one column per variant: the median TTFT p90 over the seeds (and
    the median goodput, req/s), and the ratio of the p90 to the first variant's."""
    rows_by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path in args.out.split(","):
        for line in Path(path).read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows_by_key[(r["workload"], r["phase"], r["variant"], r["seed"])] = r
    rows = [r for r in rows_by_key.values() if args.seed <= r["seed"] < args.seed + args.seeds]
    variants = args.variants.split(",")
    keys = sorted({(r["workload"], r["phase"]) for r in rows}, key=lambda k: (list(GENERATORS).index(k[0]), k[1]))
    print("| workload/phase | " + " | ".join(variants) + " |")
    print("|---|" + "---|" * len(variants))
    for workload, phase in keys:
        cells = []
        base = None
        for variant in variants:
            sel = [r for r in rows if (r["workload"], r["phase"], r["variant"]) == (workload, phase, variant)]
            if not sel:
                cells.append("")
                continue
            p90 = statistics.median(r["ttft_p90"] for r in sel)
            good = statistics.median(r["goodput"] for r in sel)
            base = p90 if base is None else base
            ratio = "" if variant == variants[0] else f" ({p90 / base:.2f}x)"
            cells.append(f"{p90:.3f}{ratio} / {good:.2f}")
        print(f"| {workload}/{phase} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("mode", choices=("run", "table", "wide"))
    parser.add_argument("out")
    parser.add_argument("--variants", default="default,default+fc,oracle")
    parser.add_argument("--workloads", default=",".join(GENERATORS))
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    {"run": run, "table": table, "wide": wide}[args.mode](args)


if __name__ == "__main__":
    main(sys.argv[1:])
