"""Run heterogeneous/closed for infergate-default (with or without the hold) and dump every turn."""
import asyncio, json, sys
from pathlib import Path
from infergate.bench.peers import driver, run as peers_run
from infergate.bench.peers.workloads import make
from infergate.bench.topology import PortPool

label, seed, epp_args = sys.argv[1], int(sys.argv[2]), tuple(sys.argv[3:])
captured = []
orig = driver.run_closed
async def capture(*a, **k):
    results, wall = await orig(*a, **k)
    captured.extend(results)
    return results, wall
driver.run_closed = capture
config = peers_run.PeersConfig(workloads=("heterogeneous",), routers=("infergate-default",), duration=120.0,
                               time_scale=0.25, seed=seed, phases=("closed",), epp_args=epp_args)
workload = make("heterogeneous", 30.0, seed, 4, closed=True)
out = asyncio.run(peers_run.run_one(config, workload, "closed", "infergate-default", Path(f"/tmp/fc/probe2/{label}-{seed}"), PortPool()))
print(label, seed, out.summary.ttft_p90, file=sys.stderr)
with open(f"/tmp/fc/probe2/{label}-{seed}.jsonl", "w") as f:
    for r in captured:
        f.write(json.dumps({"sent": r.sent_at, "ttft": r.ttft, "pod": r.pod, "ok": r.ok}) + "\n")
