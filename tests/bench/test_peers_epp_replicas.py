"""`bench peers --epp-replicas N`: N EPPs active-active behind one Envoy (each on its own
loopback address, the same ports, as an EPP Deployment's pods behind its Service), through the
production translator's ext_proc cluster."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from infergate.bench.peers.routers import InfergateRouter, RunContext, epp_replica_hosts, make_router
from infergate.bench.topology import PortPool, SimReplicas
from infergate.cli.bench import command as bench_command
from infergate.util.net import random_loopback_block

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def _picks(metrics: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("infergate_epp_endpoint_requests_total{"))


@pytest.mark.timeout(120)
async def test_two_epp_replicas_share_the_requests(envoy_bin: str, tmp_path: Path) -> None:
    ports = PortPool()
    sim_port = ports()
    sims = SimReplicas(random_loopback_block(2, sim_port), sim_port, time_scale=20.0, model=MODEL,
                       workdir=tmp_path, extra=["--mean-output-tokens", "0"])
    router = make_router("infergate-default", envoy_bin, epp_replicas=2)
    assert isinstance(router, InfergateRouter) and router.epp_hosts == ("127.0.0.1", "127.0.0.2")
    try:
        endpoints = await sims.start()
        base = await router.start(RunContext(endpoints, tmp_path, ports, 20.0, 1))
        sent = 24
        async with httpx.AsyncClient(timeout=30.0) as client:
            for i in range(sent):  # one at a time: Envoy's round robin alternates the EPPs' streams
                reply = await client.post(f"{base}/v1/completions",
                                          json={"model": MODEL, "prompt": f"question {i}", "max_tokens": 4})
                assert reply.status_code == 200, reply.text
            metrics_port = int(re.search(r"--metrics-port (\d+)", " ".join(router.processes[0].argv))[1])  # type: ignore[index]
            picks = []
            for host in router.epp_hosts:
                text = (await client.get(f"http://{host}:{metrics_port}/metrics")).text
                picks.append(_picks(text))
        assert sum(picks) == sent, picks
        assert all(p >= sent / 4 for p in picks), picks  # both replicas picked, neither idle
    finally:
        await router.stop()
        await sims.stop()


def test_epp_replicas_are_bounded_and_reported() -> None:
    assert epp_replica_hosts(3) == ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    with pytest.raises(ValueError, match=re.escape("EPP replicas: 9 is not in 1..8")):
        epp_replica_hosts(9)
    result = CliRunner().invoke(bench_command, ["peers", "--epp-replicas", "0"])
    assert result.exit_code == 2 and "--epp-replicas" in result.output, result.output
