"""heterogeneous/closed: where the cold burst goes and what follows it, per variant (evaluate.py's).

``nice -n 19 .venv/bin/python bench/results/peers/replay-flow-control/burst.py [--seed 11] [--seeds 10]``
prints, per variant, medians over the seeds of: the burst's turns (the 32 users' first, all at
t = 0) on the two fast replicas, their mean and largest TTFT, the turns after the burst that missed
the prefix cache entirely, those slower than 0.3 s, and the whole-phase TTFT p90.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from evaluate import VARIANTS  # this directory's script, not a package

from infergate.bench.peers.workloads import make


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--variants", default="default,default+fc,default+fc hold only,oracle")
    args = parser.parse_args()
    print("| variant | burst on the fast replicas (of 32) | burst TTFT mean / max (s) | after the burst: cold misses "
          "| after the burst: > 0.3 s | TTFT p90 (s) |")
    print("|---|---|---|---|---|---|")
    for variant in args.variants.split(","):
        rows = []
        for seed in range(args.seed, args.seed + args.seeds):
            r = VARIANTS[variant](make("heterogeneous", 30.0, seed, 4, closed=True), seed, 30.0)
            burst = [o for o in r.outcomes if o.start == 0.0]
            after = [o for o in r.outcomes if o.start > 0.0]
            rows.append((sum(1 for o in burst if o.replica < 2), statistics.mean(o.ttft for o in burst),
                         max(o.ttft for o in burst), sum(1 for o in after if o.cached_tokens == 0),
                         sum(1 for o in after if o.ttft > 0.3), r.ttft(90)))
        med = [statistics.median(col) for col in zip(*rows, strict=True)]
        print(f"| {variant} | {med[0]:.1f} | {med[1]:.2f} / {med[2]:.2f} | {med[3]:.1f} | {med[4]:.1f} | {med[5]:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
