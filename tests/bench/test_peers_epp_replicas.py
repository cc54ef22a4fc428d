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


def _system_prompt(group: int) -> str:
    return f"System prompt {group}: you review restaurant dishes for a food magazine. " * 40


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pick_sharing", [False, True], ids=["own-picks", "pick-sharing"])
async def test_two_epp_replicas_share_the_requests(envoy_bin: str, tmp_path: Path, pick_sharing: bool) -> None:
    """Both replicas pick (Envoy alternates their streams); with pick sharing, a prefix one replica
    placed is sent to the same model server by the other one."""
    ports = PortPool()
    sim_port = ports()
    sims = SimReplicas(random_loopback_block(2, sim_port), sim_port, time_scale=20.0, model=MODEL,
                       workdir=tmp_path, extra=["--mean-output-tokens", "0"])
    router = make_router("infergate-default", envoy_bin, epp_replicas=2, pick_sharing=pick_sharing)
    assert isinstance(router, InfergateRouter) and router.epp_hosts == ("127.0.0.1", "127.0.0.2")
    groups = 7  # odd: with Envoy alternating the EPPs, each group's second request goes to the other one
    served: dict[int, list[str]] = {g: [] for g in range(groups)}
    try:
        endpoints = await sims.start()
        base = await router.start(RunContext(endpoints, tmp_path, ports, 20.0, 1))
        async with httpx.AsyncClient(timeout=30.0) as client:
            async def send(group: int, question: str) -> None:
                reply = await client.post(f"{base}/v1/completions", json={
                    "model": MODEL, "prompt": _system_prompt(group) + question, "max_tokens": 4})
                assert reply.status_code == 200, reply.text
                served.setdefault(group, []).append(reply.headers["x-inference-pod"])

            if pick_sharing:  # ZMQ subscriptions take a moment to reach the publishers: warm them up
                for i in range(50):  # bounded: a few seconds at most
                    await send(groups, f"warm-up {i}")
                    argv = " ".join(router.processes[1].argv)
                    text = (await client.get(f"http://127.0.0.2:{_port(argv, 'metrics')}/metrics")).text
                    if _count(text, 'infergate_epp_pick_sharing_received_total{result="applied"}') >= 1:
                        break
            # one at a time: Envoy's round robin alternates the EPPs, so each group's two requests
            # are picked by different replicas
            for question in ("first question", "second question"):
                for group in range(groups):
                    await send(group, question)
            metrics_port = _port(" ".join(router.processes[0].argv), "metrics")
            picks, hits = [], 0.0
            for host in router.epp_hosts:
                text = (await client.get(f"http://{host}:{metrics_port}/metrics")).text
                picks.append(_count(text, "infergate_epp_endpoint_requests_total{"))
                hits += _count(text, "inference_extension_prefix_indexer_hit_ratio_sum")
    finally:
        await router.stop()
        await sims.stop()
    sent = sum(len(v) for v in served.values())
    assert sum(picks) == sent, picks
    assert all(p >= sent / 4 for p in picks), picks  # both replicas picked, neither idle
    # the EPPs' own view: the fraction of each request's prefix their index placed on the endpoint picked
    # (the warm-up questions share no prefix; a group's first request finds nothing)
    if pick_sharing:
        assert hits > 0.8 * groups, hits  # each second request: the other replica's pick was known
        assert all(served[g][0] == served[g][1] for g in range(groups)), served  # and followed
    else:
        assert hits < 0.5 * groups, hits  # the second requests went to a replica that never saw the prefix


def _port(argv: str, name: str) -> int:
    found = re.search(rf"--{name}-port (\d+)", argv)
    assert found is not None, argv
    return int(found[1])


def _count(metrics: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix))


def test_epp_replicas_are_bounded_and_reported() -> None:
    assert epp_replica_hosts(3) == ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    with pytest.raises(ValueError, match=re.escape("EPP replicas: 9 is not in 1..8")):
        epp_replica_hosts(9)
    result = CliRunner().invoke(bench_command, ["peers", "--epp-replicas", "0"])
    assert result.exit_code == 2 and "--epp-replicas" in result.output, result.output
    result = CliRunner().invoke(bench_command, ["peers", "--epp-pick-sharing"])
    assert result.exit_code == 2 and "give --epp-replicas 2 or more" in result.output, result.output
