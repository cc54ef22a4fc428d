"""Benchmark: time from `infergate epp` process start to gRPC readiness (issue 17 defect 8).

    python -m infergate.bench.epp_startup --runs 5 --pods 3 [--json]

Starts the embedded API server (GIE v1.0 CRDs from ``--crds``), ``--pods`` `infergate sim`
replicas on loopback addresses and, for each run, a fresh `infergate epp` process on that pool.
It polls the health port's ``readiness`` service every 5 ms from the moment the process is
spawned and reports, per run, the wall time to SERVING and the process's CPU time at that
moment (user + system, from /proc: the figure that grows least with other load on the
machine), plus the CPU time of importing the EPP's modules alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer
from infergate.epp.extproc import health
from infergate.util.net import free_port

EPP_MODULES = "import infergate.cli.epp, infergate.epp.runner, uvloop"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def import_seconds(runs: int) -> float:
    """The least CPU time a fresh interpreter spends importing the EPP's modules (measured inside it)."""
    code = f"import time; t = time.process_time(); {EPP_MODULES}; print(time.process_time() - t)"
    return min(float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
               for _ in range(runs))


def setup(handle: ThreadedAPIServer, crds: Path, pods: int, port: int) -> str:
    handle.apply_files(*sorted(crds.glob("*.yaml")))
    namespace = "bench"
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
         "metadata": {"name": "pool", "namespace": namespace},
         "spec": {"selector": {"matchLabels": {"app": "sim"}}, "targetPorts": [{"number": port}],
                  "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}},
    ]
    for i in range(pods):
        objects.append({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": f"sim-{i}", "namespace": namespace, "labels": {"app": "sim"}},
                        "spec": {"containers": [{"name": "sim", "image": "sim"}]},
                        "status": {"podIP": f"127.0.4.{i + 1}", "phase": "Running",
                                   "conditions": [{"type": "Ready", "status": "True"}]}})
    handle.apply(objects)
    return namespace


async def one_run(kubeconfig: Path, namespace: str, log: Path) -> dict[str, float]:
    health_port = free_port()
    command = [sys.executable, "-m", "infergate", "epp", "--pool-name", "pool", "--pool-namespace", namespace,
               "--kubeconfig", str(kubeconfig), "--host", "127.0.0.1", "--grpc-port", str(free_port()),
               "--grpc-health-port", str(health_port), "--metrics-port", str(free_port())]
    # one channel, reconnecting every 10 ms: a channel per poll would take CPU from the EPP
    options = [("grpc.initial_reconnect_backoff_ms", 10), ("grpc.min_reconnect_backoff_ms", 10),
               ("grpc.max_reconnect_backoff_ms", 10)]
    request = health_pb2.HealthCheckRequest(service="readiness")
    started = time.monotonic()
    with log.open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{health_port}", options=options) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"infergate epp exited ({process.returncode}); see {log}")
                try:
                    answer = await stub.Check(request, timeout=0.5)
                    if answer.status == health.SERVING:
                        return {"wall_s": time.monotonic() - started, "cpu_s": cpu_seconds(process.pid)}
                except grpc.aio.AioRpcError:  # not listening yet
                    pass
                await asyncio.sleep(0.005)
    finally:
        process.terminate()
        process.wait(10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pods", type=int, default=3)
    parser.add_argument("--crds", type=Path, default=Path("../shared/reference/gie-v1.0.0/crd"),
                        help="directory of the GIE v1.0 CRDs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="infergate-bench-startup-"))
    port = free_port()
    handle = EmbeddedAPIServer.run_in_thread(work / "apiserver")
    sims = subprocess.Popen([sys.executable, "-m", "infergate", "sim", "--replicas", str(args.pods),
                             "--address", "127.0.4.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        namespace = setup(handle, args.crds, args.pods, port)
        runs = [asyncio.run(one_run(handle.kubeconfig_path, namespace, work / f"epp-{i}.log"))
                for i in range(args.runs)]
        imports = import_seconds(args.runs)
    finally:
        sims.terminate()
        sims.wait(10)
        handle.stop()
    result = {"runs": runs, "pods": args.pods, "import_s": imports,
              "wall_s_median": statistics.median(r["wall_s"] for r in runs),
              "cpu_s_median": statistics.median(r["cpu_s"] for r in runs), "load_average": os.getloadavg()[0]}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for i, r in enumerate(runs):
        print(f"run {i}: ready {r['wall_s']:.3f} s after spawn, CPU {r['cpu_s']:.2f} s")
    print(f"median: ready {result['wall_s_median']:.3f} s, CPU {result['cpu_s_median']:.2f} s; "
          f"imports alone {imports:.2f} s CPU; load average {result['load_average']:.1f}")


if __name__ == "__main__":
    main()
