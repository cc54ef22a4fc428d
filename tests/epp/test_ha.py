"""EPP high availability (`--ha-enable-leader-election`, issue 14) and the EPP protocol's health
services, with real `infergate epp` processes on one pool of the embedded API server: one
leader is ready, the other is live but not ready; killing the leader (SIGKILL: no hand-over)
makes the other ready once the Lease lapses; stopping one cleanly (SIGTERM) hands over at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer
from infergate.cli.epp import command as epp_command
from infergate.epp.extproc import health
from infergate.epp.readiness import LIVENESS, lease_name
from infergate.epp.runner import EPPOptions, EPPRunner
from infergate.kube.client import KubeClient
from infergate.kube.config import load_config
from infergate.kube.kinds import LEASES
from infergate.util.net import free_port

from .kube_pool import EppProcess, create_pool, install_crds, start_epp

LEASE_S = 3.0
HA_FLAGS = ("--ha-enable-leader-election", "--ha-lease-duration", "3s", "--ha-renew-deadline", "2s",
            "--ha-retry-period", "200ms")


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Iterator[ThreadedAPIServer]:
    handle = EmbeddedAPIServer.run_in_thread(tmp_path_factory.mktemp("epp-ha-apiserver"))
    try:
        install_crds(handle, reference_dir)
        yield handle
    finally:
        handle.stop()


async def until_one_leads(epps: list[EppProcess], timeout: float = 30.0) -> EppProcess:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [await e.status() for e in epps]
        if statuses.count(health.SERVING) == 1 and statuses.count(health.NOT_SERVING) == len(epps) - 1:
            return epps[statuses.index(health.SERVING)]
        for e in epps:
            assert e.process.poll() is None, f"{e.name} exited:\n{e.log()}"
        await asyncio.sleep(0.05)
    raise AssertionError("no single leader: " + "\n".join(f"{e.name}:\n{e.log()[-2000:]}" for e in epps))


async def until_ready(epp: EppProcess, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await epp.status() == health.SERVING:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"{epp.name} not ready within {timeout} s:\n{epp.log()[-3000:]}")


async def until_logged(epp: EppProcess, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in epp.log():
        assert time.monotonic() < deadline, f"{epp.name} never logged {text!r}:\n{epp.log()[-3000:]}"
        await epp.status()  # readiness is evaluated (and its first sync logged) when checked
        await asyncio.sleep(0.05)


async def lease_spec(apiserver: ThreadedAPIServer, namespace: str) -> dict[str, Any]:
    async with KubeClient(load_config(apiserver.kubeconfig_path)) as client:
        lease = await client.get(LEASES.path(namespace, lease_name(namespace, "pool")))
    assert lease is not None, "no Lease in the pool's namespace"
    return dict(lease.get("spec") or {})


@pytest.mark.e2e
async def test_only_the_leader_is_ready_and_the_other_takes_over(apiserver: ThreadedAPIServer,
                                                                  tmp_path: Path) -> None:
    # pods on a closed port: every first scrape fails at once, which completes it
    namespace = create_pool(apiserver, free_port(), ["127.0.3.1", "127.0.3.2"])
    a = start_epp(apiserver.kubeconfig_path, namespace, tmp_path, "a", *HA_FLAGS)
    b = start_epp(apiserver.kubeconfig_path, namespace, tmp_path, "b", *HA_FLAGS)
    c: EppProcess | None = None
    try:
        leader = await until_one_leads([a, b])
        follower = b if leader is a else a
        # the protocol's names: liveness on both; readiness and the ext_proc name only on the leader
        for epp in (a, b):
            assert await epp.status(LIVENESS) == health.SERVING
        assert await leader.status("envoy.service.ext_proc.v3.ExternalProcessor") == health.SERVING
        assert await follower.status("envoy.service.ext_proc.v3.ExternalProcessor") == health.NOT_SERVING
        assert await leader.status("") == health.SERVING
        assert await leader.status("inference-extension") == health.SERVICE_UNKNOWN  # as upstream with LE
        # the follower keeps its datastore warm: synced and scraped, only leadership missing
        await until_logged(follower, "datastore synced: pool and pods listed, 2 endpoint(s) scraped")
        assert await follower.status() == health.NOT_SERVING
        spec = await lease_spec(apiserver, namespace)
        assert spec["holderIdentity"] and spec["leaseDurationSeconds"] == 3

        # SIGKILL: no hand-over; the follower takes the Lease once it has lapsed (its own clock)
        leader.kill()
        took = await until_ready(follower, timeout=LEASE_S + 8)
        assert took < LEASE_S + 5, took  # a few seconds: the lease duration plus a retry or two

        # a clean stop (SIGTERM) gives the Lease back: a fresh follower takes over at its next read
        c = start_epp(apiserver.kubeconfig_path, namespace, tmp_path, "c", *HA_FLAGS)
        await until_one_leads([follower, c])
        assert await c.status(LIVENESS) == health.SERVING
        follower.terminate()
        took = await until_ready(c, timeout=LEASE_S + 8)
        assert took < LEASE_S, took  # before the lease could have lapsed: it was given back
        assert "(previous holder: none)" in c.log()  # taken free, not taken over from an expired holder
        assert (await lease_spec(apiserver, namespace))["leaseTransitions"] >= 2
    finally:
        for epp in (a, b, c):
            if epp is not None:
                epp.stop()


def test_leader_election_needs_the_kubernetes_api(tmp_path: Path) -> None:
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text("pool: {name: pool, targetPorts: [8000]}\nendpoints: []\n")
    result = CliRunner().invoke(epp_command, ["--pool-name", "pool", "--static-file", str(pool_file),
                                              "--ha-enable-leader-election"])
    assert result.exit_code == 2 and "--static-file" in result.output
    result = CliRunner().invoke(epp_command, ["--pool-name", "pool", "--ha-enable-leader-election",
                                              "--ha-lease-duration", "5s", "--ha-renew-deadline", "10s"])
    assert result.exit_code == 2 and "--ha-renew-deadline" in result.output


def test_the_lease_is_named_as_upstream_names_it() -> None:
    assert lease_name("prod", "llama") == "epp-prod-llama.gateway-api-inference-extension.sigs.k8s.io"


def test_the_runner_refuses_what_leader_election_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--static-file"):
        EPPRunner(EPPOptions(pool_name="pool", static_file=str(tmp_path / "pool.yaml"), ha_enable_leader_election=True))
    with pytest.raises(ValueError, match="--ha-renew-deadline"):
        EPPRunner(EPPOptions(pool_name="pool", ha_enable_leader_election=True, ha_renew_deadline=20.0))
