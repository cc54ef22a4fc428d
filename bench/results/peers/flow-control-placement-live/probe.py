"""heterogeneous/closed for infergate-default through `bench peers`' own run_one (real Envoy, EPP and
simulator processes), recording every turn: `python probe.py OUT_DIR LABEL SEED [infergate epp flags...]`
writes OUT_DIR/LABEL-SEED.jsonl (sent: wall s from the phase's start; ttft: wall s; pod; ok) and prints
the summary's TTFT p90 (model s) to stderr. 2 minutes per run at time scale 0.25; run from a checkout with
PYTHONPATH=src and INFERGATE_BENCH_VENVS set, as `bench peers`."""
import asyncio
import json
import sys
from pathlib import Path

from infergate.bench.peers import driver
from infergate.bench.peers import run as peers_run
from infergate.bench.peers.workloads import make
from infergate.bench.topology import PortPool

out_dir, label, seed, epp_args = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), tuple(sys.argv[4:])
captured = []
run_closed = driver.run_closed


async def capture(*args, **kwargs):
    results, wall = await run_closed(*args, **kwargs)
    captured.extend(results)
    return results, wall

driver.run_closed = capture
config = peers_run.PeersConfig(workloads=("heterogeneous",), routers=("infergate-default",), duration=120.0,
                               time_scale=0.25, seed=seed, phases=("closed",), epp_args=epp_args)
workload = make("heterogeneous", config.duration * config.time_scale, seed, config.replicas, closed=True)
outcome = asyncio.run(peers_run.run_one(config, workload, "closed", "infergate-default",
                                        out_dir / f"{label}-{seed}", PortPool()))
print(label, seed, outcome.summary.ttft_p90 if outcome.summary else None, file=sys.stderr)
with open(out_dir / f"{label}-{seed}.jsonl", "w") as f:
    for r in captured:
        f.write(json.dumps({"sent": r.sent_at, "ttft": r.ttft, "pod": r.pod, "ok": r.ok}) + "\n")
