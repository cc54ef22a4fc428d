"""With leader election, a Gateway whose Envoys are connected to another replica is Programmed
as soon as its Deployment has a Ready pod, not a resync later.

The service proxy (or kube-proxy) sends an Envoy pod's ADS stream to any controller replica;
the leader, which writes the statuses, sees no ACK for a Gateway whose Envoys went to a
follower and counts a Ready pod of the Gateway's Deployment instead (``ready_pods_count_as_acked``).
Before, it read that Deployment only through its once-per-resync cache (10 s) and only on the
next resync tick: a Gateway of the chart's two controller replicas took 14-16 s after its Envoy
pod was Ready to be Programmed (the chart's e2e test waited for it 5 runs out of 7). Now the
leader looks again at a pending Gateway's Deployment 0.5 s later, then each time half as long
again (0.75 s, 1.1 s ...) up to the resync period, until it is Ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer
from infergate.gateway import GatewayConfig, run_gateway
from infergate.kube import kinds
from infergate.kube.client import KubeClient
from infergate.kube.config import load_config
from infergate.up.cluster import crd_documents, install_crds
from infergate.util.net import free_port
from infergate.util.wait import async_wait_until

NS = "default"
CLASS = "infergate-elsewhere"
CONTROLLER = "infergate.io/elsewhere-controller"


@pytest.fixture
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedAPIServer]:
    with EmbeddedAPIServer.run_in_thread(tmp_path_factory.mktemp("fleet-elsewhere")) as handle:
        yield handle


def condition(obj: dict[str, Any] | None, kind: str) -> str | None:
    return next((c["status"] for c in ((obj or {}).get("status") or {}).get("conditions") or ()
                 if c["type"] == kind), None)


async def test_a_gateway_served_by_another_replica_is_programmed_once_its_deployment_is_ready(
        apiserver: ThreadedAPIServer) -> None:
    api = KubeClient(load_config(str(apiserver.kubeconfig_path)))
    await api.open()
    await install_crds(api, crd_documents("ga"))
    await api.create(kinds.SERVICES.path(NS), {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "infergate-xds", "namespace": NS},
        "spec": {"selector": {"app": "infergate-controller"}, "ports": [{"name": "xds", "port": 18000}]}})
    await api.create(kinds.GATEWAY_CLASSES.path(), {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": CLASS},
        "spec": {"controllerName": CONTROLLER}})
    # the default resync (10 s); no Envoy connects to this replica: its Envoys are "elsewhere"
    config = GatewayConfig(kubeconfig=str(apiserver.kubeconfig_path), data_plane="deployments",
                           controller_name=CONTROLLER, xds_address=f"127.0.0.1:{free_port()}",
                           xds_service=f"{NS}/infergate-xds:18000", envoy_image="ghcr.io/infergate/infergate:test",
                           debounce=0.05, leader_elect=True, leader_election_namespace=NS,
                           leader_lease_s=(3.0, 2.0, 0.3))
    started = asyncio.Event()
    task = asyncio.create_task(run_gateway(config, started=started))
    try:
        await asyncio.wait_for(started.wait(), 30)
        await api.create(kinds.GATEWAYS.path(NS), {
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": NS},
            "spec": {"gatewayClassName": CLASS, "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}})
        deployment_path = kinds.DEPLOYMENTS.path(NS, "infergate-gw")
        await async_wait_until(lambda: api.get(deployment_path), 15, interval=0.05, what="the Envoy Deployment")

        async def gateway_condition(kind: str) -> str | None:
            return condition(await api.get(kinds.GATEWAYS.path(NS, "gw")), kind)

        await async_wait_until(lambda: _is(gateway_condition("Accepted"), "True"), 10, interval=0.05,
                               what="the Gateway Accepted")
        assert await gateway_condition("Programmed") != "True"  # no Envoy anywhere yet
        await asyncio.sleep(1.0)  # the Envoy pod starts and gets its configuration (elsewhere)
        deployment = await api.get(deployment_path)
        assert deployment is not None
        await api.merge_patch(kinds.DEPLOYMENTS.path(NS, "infergate-gw", "status"), {"status": {
            "observedGeneration": deployment["metadata"]["generation"], "replicas": 1, "updatedReplicas": 1,
            "readyReplicas": 1, "availableReplicas": 1}})
        ready = time.monotonic()
        await async_wait_until(lambda: _is(gateway_condition("Programmed"), "True"), 12, interval=0.05,
                               what="the Gateway Programmed")
        took = time.monotonic() - ready
        assert took < 4.0, f"Programmed {took:.1f}s after its Deployment had a Ready pod"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await api.close()


async def _is(value: Any, expected: str) -> bool:
    return await value == expected
