"""End to end: `infergate gateway --data-plane deployments` against the embedded API server.

The controller (``run_gateway`` in this process, as the CLI runs it) creates each Gateway's
Envoy Deployment, Service and PodDisruptionBudget, owned by the Gateway; deleting the Gateway
garbage-collects them. An ``infergate envoy`` process started the way the local runtime starts a
pod (``python -m infergate.cli.pod``, ``INFERGATE_POD_IP``) connects to the controller's xDS,
ACKs, the Gateway becomes Programmed, and a request through that Envoy reaches an
``infergate sim`` replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer
from infergate.bench.topology import ManagedProcess
from infergate.gateway import GatewayConfig, run_gateway
from infergate.kube import kinds
from infergate.kube.client import KubeClient
from infergate.kube.config import load_config
from infergate.sim import SimCluster, SimConfig
from infergate.up.cluster import crd_documents, install_crds
from infergate.util.net import free_port, random_loopback_block
from infergate.util.wait import async_wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("fleet-e2e")]
LOOP = pytest.mark.asyncio(loop_scope="module")
CLASS = "infergate-fleet"
NS = "default"


@dataclass
class Controller:
    api: KubeClient
    xds_port: int
    task: asyncio.Task[None]


def conditions(obj: dict[str, Any] | None) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c.get("message", ""))
            for c in ((obj or {}).get("status") or {}).get("conditions") or ()}


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 15.0) -> Any:
    result: list[Any] = []

    async def probe() -> bool:
        value = await check()
        if value:
            result.append(value)
            return True
        return False

    await async_wait_until(probe, timeout, interval=0.1, what=what)
    return result[0]


def gateway(name: str, port: int) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": name, "namespace": NS},
            "spec": {"gatewayClassName": CLASS, "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}}


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedAPIServer]:
    with EmbeddedAPIServer.run_in_thread(tmp_path_factory.mktemp("fleet-apiserver")) as handle:
        yield handle


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def controller(apiserver: ThreadedAPIServer) -> AsyncIterator[Controller]:
    api = KubeClient(load_config(str(apiserver.kubeconfig_path)))
    await api.open()
    await install_crds(api, crd_documents("ga"))  # Gateway API + GA InferencePool, as `infergate up` does
    xds_port = free_port()
    await api.create(kinds.SERVICES.path(NS), {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "infergate-xds", "namespace": NS},
        "spec": {"selector": {"app": "infergate-controller"}, "ports": [{"name": "xds", "port": 18000,
                                                                          "targetPort": xds_port}]}})
    await api.create(kinds.CONFIGMAPS.path(NS), {"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": "fleet-params", "namespace": NS},
                                                 "data": {"replicas": "2", "logLevel": "info"}})
    await api.create(kinds.GATEWAY_CLASSES.path(), {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": CLASS},
        "spec": {"controllerName": "infergate.io/gateway-controller",
                 "parametersRef": {"group": "", "kind": "ConfigMap", "name": "fleet-params", "namespace": NS}}})
    config = GatewayConfig(kubeconfig=str(apiserver.kubeconfig_path), data_plane="deployments",
                           xds_address=f"127.0.0.1:{xds_port}", xds_service=f"{NS}/infergate-xds:18000",
                           envoy_image="ghcr.io/infergate/infergate:test", envoy_drain_seconds=1,
                           fleet_resync=0.5, debounce=0.05)
    started = asyncio.Event()
    task = asyncio.create_task(run_gateway(config, started=started))
    try:
        await asyncio.wait_for(started.wait(), 30)
        yield Controller(api, xds_port, task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await api.close()


@LOOP
async def test_a_gateway_gets_its_envoy_objects_and_deleting_it_collects_them(controller: Controller) -> None:
    api = controller.api
    created = await api.create(kinds.GATEWAYS.path(NS), gateway("gw-a", 8080))
    deployment_path = kinds.DEPLOYMENTS.path(NS, "infergate-gw-a")
    service_path = kinds.SERVICES.path(NS, "infergate-gw-a")
    pdb_path = kinds.POD_DISRUPTION_BUDGETS.path(NS, "infergate-gw-a")
    xds = await api.get(kinds.SERVICES.path(NS, "infergate-xds"))
    assert xds is not None
    xds_ip = xds["spec"]["clusterIP"]

    deployment = await eventually(lambda: api.get(deployment_path), "the Envoy Deployment")
    owner = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": "gw-a",
             "uid": created["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    assert deployment["metadata"]["ownerReferences"] == [owner]
    assert deployment["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"] == "gw-a"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "infergate"
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/infergate/infergate:test"
    assert container["command"][:6] == ["infergate", "envoy", "--xds-server", f"{xds_ip}:18000",
                                        "--node-id", "default/gw-a"]
    assert "info" in container["command"]
    service = await eventually(lambda: api.get(service_path), "the Envoy Service")
    assert service["spec"]["type"] == "LoadBalancer"
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8080, 8080)]
    assert service["metadata"]["ownerReferences"] == [owner]
    pdb = await eventually(lambda: api.get(pdb_path), "the PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    # Up to date objects are not written again (the API server's defaults do not count as drift).
    await asyncio.sleep(1.2)  # two resyncs
    for path, before in ((deployment_path, deployment), (service_path, service), (pdb_path, pdb)):
        after = await api.get(path)
        assert after is not None
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], path

    # Addresses from the Envoy Service; not Programmed while no Envoy has ACKed.
    async def gateway_status() -> dict[str, Any] | None:
        gw = await api.get(kinds.GATEWAYS.path(NS, "gw-a"))
        return gw if gw and (gw.get("status") or {}).get("addresses") else None

    status = (await eventually(gateway_status, "Gateway addresses"))["status"]
    assert status["addresses"][0]["value"] == service["spec"]["clusterIP"]
    assert conditions({"status": status})["Programmed"][:2] == ("False", "Pending")

    # A bad parameter: the GatewayClass says which key; the Envoy objects stay.
    await api.merge_patch(kinds.CONFIGMAPS.path(NS, "fleet-params"), {"data": {"replicas": "two"}})

    async def class_invalid() -> tuple[str, str, str] | None:
        accepted = conditions(await api.get(kinds.GATEWAY_CLASSES.path(None, CLASS))).get("Accepted")
        return accepted if accepted and accepted[0] == "False" else None

    accepted = await eventually(class_invalid, "GatewayClass Accepted=False")
    assert accepted[1] == "InvalidParameters"
    assert "replicas" in accepted[2]
    assert await api.get(deployment_path) is not None

    # One replica: no disruption budget (it would block every drain).
    await api.merge_patch(kinds.CONFIGMAPS.path(NS, "fleet-params"), {"data": {"replicas": "1"}})
    await eventually(lambda: _gone(api, pdb_path), "the PodDisruptionBudget to go")
    assert (await api.get(deployment_path) or {})["spec"]["replicas"] == 1

    async def class_accepted() -> bool:  # written right after the objects, in the same reconcile
        return conditions(await api.get(kinds.GATEWAY_CLASSES.path(None, CLASS)))["Accepted"][0] == "True"

    await eventually(class_accepted, "GatewayClass Accepted=True again")

    await api.delete(kinds.GATEWAYS.path(NS, "gw-a"))
    for path in (deployment_path, service_path):
        await eventually(lambda path=path: _gone(api, path), f"{path} to be garbage-collected")  # type: ignore[misc]


async def _true(value: bool) -> bool:
    return value


async def _not_ready(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(url)).status_code != 200
    except httpx.HTTPError:
        return True  # already gone


async def _gone(api: KubeClient, path: str) -> bool:
    return await api.get(path) is None


@LOOP
async def test_an_envoy_pod_acks_and_serves_the_gateway(controller: Controller, tmp_path: Path) -> None:
    api = controller.api
    sim_port, listen, admin = free_port(), free_port(), free_port()
    # ~70 ms per token: a 20-token stream is still open when the pod is told to stop
    sim = SimCluster(SimConfig(model="m", time_scale=0.1, mean_output_tokens=0), random_loopback_block(1, sim_port),
                     sim_port)
    pod_ip = random_loopback_block(1, listen)[0]
    await api.create(kinds.SERVICES.path(NS), {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "sim", "namespace": NS},
        "spec": {"ports": [{"name": "http", "port": sim_port}]}})
    await api.create(kinds.ENDPOINT_SLICES.path(NS), {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "sim-1", "namespace": NS, "labels": {"kubernetes.io/service-name": "sim"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": sim_port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [sim.replicas[0].host], "conditions": {"ready": True}}]})
    await api.create(kinds.GATEWAYS.path(NS), gateway("gw-b", listen))
    await api.create(kinds.HTTPROUTES.path(NS), {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "to-sim", "namespace": NS},
        "spec": {"parentRefs": [{"name": "gw-b"}], "rules": [{"backendRefs": [{"name": "sim", "port": sim_port}]}]}})
    envoy = ManagedProcess(
        [sys.executable, "-m", "infergate.cli.pod", "envoy", "--xds-server", f"127.0.0.1:{controller.xds_port}",
         "--node-id", "default/gw-b", "--admin-port", str(admin), "--drain-seconds", "5"],
        name="envoy-pod", env={**os.environ, "INFERGATE_POD_IP": pod_ip}, log_path=tmp_path / "envoy.log")
    await sim.start()
    try:
        await envoy.start()

        async def programmed() -> bool:
            return conditions(await api.get(kinds.GATEWAYS.path(NS, "gw-b"))).get("Programmed", ("",))[0] == "True"

        try:
            await eventually(programmed, "the Gateway to be Programmed", timeout=20)
        except Exception:
            print((tmp_path / "envoy.log").read_text()[-3000:])
            raise
        async with httpx.AsyncClient(timeout=5) as client:
            ready = await client.get(f"http://{pod_ip}:{admin}/ready")
            assert ready.status_code == 200
            response = await client.post(f"http://{pod_ip}:{listen}/v1/completions",
                                         json={"model": "m", "prompt": "hello", "max_tokens": 3})
            assert response.status_code == 200, response.text
            assert response.json()["model"] == "m"
            # SIGTERM to the pod's process group, as the local runtime (and a kill of the group) does:
            # readiness fails, the open stream finishes, then Envoy exits.
            assert envoy.process is not None
            chunks: list[str] = []

            async def stream() -> int:
                async with client.stream("POST", f"http://{pod_ip}:{listen}/v1/completions",
                                         json={"model": "m", "prompt": "hello", "max_tokens": 20, "ignore_eos": True,
                                               "stream": True}) as streamed:
                    async for line in streamed.aiter_lines():
                        if line.startswith("data: ") and line != "data: [DONE]":
                            chunks.append(line)
                    return streamed.status_code

            streaming = asyncio.create_task(stream())
            await eventually(lambda: _true(bool(chunks)), "the first streamed token")
            os.killpg(envoy.process.pid, signal.SIGTERM)
            await eventually(lambda: _not_ready(client, f"http://{pod_ip}:{admin}/ready"), "readiness to fail")
            assert await asyncio.wait_for(streaming, 15) == 200
            assert len(chunks) == 20, f"the stream was cut after {len(chunks)} tokens"
            code = await asyncio.wait_for(envoy.process.wait(), 15)
            assert code == 0, (tmp_path / "envoy.log").read_text()[-3000:]
    finally:
        await envoy.stop()
        await sim.stop()
        await api.delete(kinds.GATEWAYS.path(NS, "gw-b"))


@LOOP
async def test_with_leader_election_only_the_lease_holder_writes(controller: Controller,
                                                                 apiserver: ThreadedAPIServer) -> None:
    api = controller.api
    ha_class, lease_path = "infergate-ha", kinds.LEASES.path(NS, "infergate-gateway-controller")
    await api.create(kinds.GATEWAY_CLASSES.path(), {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": ha_class},
        "spec": {"controllerName": "infergate.io/ha-controller"}})
    # Someone else holds the Lease (and keeps it for a while).
    await api.create(kinds.LEASES.path(NS), {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "infergate-gateway-controller", "namespace": NS},
        "spec": {"holderIdentity": "another-replica", "leaseDurationSeconds": 60,
                 "renewTime": utc_now_micro(), "acquireTime": utc_now_micro()}})
    config = GatewayConfig(kubeconfig=str(apiserver.kubeconfig_path), data_plane="deployments",
                           controller_name="infergate.io/ha-controller", xds_address=f"127.0.0.1:{free_port()}",
                           envoy_drain_seconds=1, fleet_resync=0.5, debounce=0.05,
                           leader_elect=True, leader_election_namespace=NS, leader_lease_s=(3.0, 2.0, 0.3))
    started = asyncio.Event()
    task = asyncio.create_task(run_gateway(config, started=started))
    try:
        await asyncio.wait_for(started.wait(), 30)
        gw = gateway("gw-ha", 8081)
        gw["spec"]["gatewayClassName"] = ha_class
        await api.create(kinds.GATEWAYS.path(NS), gw)
        await asyncio.sleep(1.5)  # several reconciles and resyncs
        assert await api.get(kinds.DEPLOYMENTS.path(NS, "infergate-gw-ha")) is None, "a follower wrote"
        follower_view = await api.get(kinds.GATEWAYS.path(NS, "gw-ha"))
        assert conditions(follower_view).get("Accepted", ("Unknown",))[0] != "True", "a follower wrote a status"
        assert "addresses" not in ((follower_view or {}).get("status") or {})
        # The other replica goes away: this one takes the Lease and writes at once.
        await api.delete(lease_path)
        await eventually(lambda: api.get(kinds.DEPLOYMENTS.path(NS, "infergate-gw-ha")), "the new leader's Deployment")
        lease = await api.get(lease_path)
        assert lease is not None and lease["spec"]["holderIdentity"] not in ("", "another-replica")
        await eventually(lambda: _accepted(api, "gw-ha"), "the new leader's Gateway status")
        # The module's other controller (another controllerName) prunes only its own Envoy objects.
        first = await api.get(kinds.DEPLOYMENTS.path(NS, "infergate-gw-ha"))
        await asyncio.sleep(1.2)  # two of its resyncs
        later = await api.get(kinds.DEPLOYMENTS.path(NS, "infergate-gw-ha"))
        assert first is not None and later is not None
        assert later["metadata"]["uid"] == first["metadata"]["uid"], "another controller deleted it (then recreated)"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await api.delete(kinds.GATEWAYS.path(NS, "gw-ha"))
    # Stopping gave the Lease back.
    assert not ((await api.get(lease_path) or {}).get("spec") or {}).get("holderIdentity")


async def _accepted(api: KubeClient, name: str) -> bool:
    return conditions(await api.get(kinds.GATEWAYS.path(NS, name))).get("Accepted", ("",))[0] == "True"


def utc_now_micro() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@LOOP
async def test_envoy_keeps_serving_while_the_controller_restarts(controller: Controller, apiserver: ThreadedAPIServer,
                                                                 tmp_path: Path) -> None:
    api = controller.api
    own_class, controller_name = "infergate-restart", "infergate.io/restart-controller"
    await api.create(kinds.GATEWAY_CLASSES.path(), {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": own_class},
        "spec": {"controllerName": controller_name}})
    sim_port, listen, admin, xds_port = free_port(), free_port(), free_port(), free_port()
    sim = SimCluster(SimConfig(model="m", time_scale=100.0, mean_output_tokens=0), random_loopback_block(1, sim_port),
                     sim_port)
    pod_ip = random_loopback_block(1, listen)[0]
    await api.create(kinds.SERVICES.path(NS), {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "sim-r", "namespace": NS},
        "spec": {"ports": [{"name": "http", "port": sim_port}]}})
    await api.create(kinds.ENDPOINT_SLICES.path(NS), {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "sim-r-1", "namespace": NS, "labels": {"kubernetes.io/service-name": "sim-r"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": sim_port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [sim.replicas[0].host], "conditions": {"ready": True}}]})
    gw = gateway("gw-r", listen)
    gw["spec"]["gatewayClassName"] = own_class
    await api.create(kinds.GATEWAYS.path(NS), gw)
    await api.create(kinds.HTTPROUTES.path(NS), {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "to-sim-r", "namespace": NS},
        "spec": {"parentRefs": [{"name": "gw-r"}], "rules": [{"backendRefs": [{"name": "sim-r", "port": sim_port}]}]}})
    config = GatewayConfig(kubeconfig=str(apiserver.kubeconfig_path), data_plane="deployments",
                           controller_name=controller_name, xds_address=f"127.0.0.1:{xds_port}", fleet_resync=0.5,
                           debounce=0.05)

    def start_controller() -> tuple[asyncio.Task[None], asyncio.Event]:
        started = asyncio.Event()
        return asyncio.create_task(run_gateway(config, started=started)), started

    async def stop(task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    envoy = ManagedProcess(
        [sys.executable, "-m", "infergate.cli.pod", "envoy", "--xds-server", f"127.0.0.1:{xds_port}",
         "--node-id", "default/gw-r", "--admin-port", str(admin), "--drain-seconds", "1"],
        name="envoy-pod", env={**os.environ, "INFERGATE_POD_IP": pod_ip}, log_path=tmp_path / "envoy.log")
    task, started = start_controller()
    await sim.start()
    try:
        await asyncio.wait_for(started.wait(), 30)
        await envoy.start()
        async with httpx.AsyncClient(timeout=5) as client:
            async def served() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.post(f"http://{pod_ip}:{listen}/v1/completions",
                                                 json={"model": "m", "prompt": "hi", "max_tokens": 2})
                    return response.status_code == 200
                return False

            await eventually(served, "a request through the Envoy pod", timeout=20)

            async def programmed() -> bool:
                gateway_now = await api.get(kinds.GATEWAYS.path(NS, "gw-r"))
                return conditions(gateway_now).get("Programmed", ("",))[0] == "True"

            await eventually(programmed, "the Gateway Programmed", timeout=15)
            results: list[bool] = []
            statuses: list[bool] = []

            async def probe() -> None:  # requests all along, while the controller goes and comes back
                while True:
                    results.append(await served())
                    statuses.append(await programmed())
                    await asyncio.sleep(0.05)

            prober = asyncio.create_task(probe())
            try:
                await stop(task)  # every controller gone
                await asyncio.sleep(0.5)
                task, started = start_controller()  # back, from scratch: Envoy reconnects and re-syncs
                await asyncio.wait_for(started.wait(), 30)
                await asyncio.sleep(1.0)
            finally:
                prober.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await prober
            assert len(results) >= 10
            assert all(results), f"{results.count(False)} of {len(results)} requests failed"
            assert all(statuses), "the Gateway went through Programmed=False while its Envoy kept serving"
            assert await served()
    finally:
        await envoy.stop()
        await stop(task)
        await sim.stop()
        await api.delete(kinds.GATEWAYS.path(NS, "gw-r"))
