"""Several Envoys of several Gateways on one ADS server (``--data-plane deployments``): each node
gets its Gateway's listeners at its pod IP, and the server tracks each node's ACK/NACK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2
from google.rpc import status_pb2

from infergate.dataplane.remote import fleet_resources
from infergate.dataplane.xds_server import NodeInfo, XdsServer, node_listeners, route_names
from infergate.dataplane.xds_translator import (
    T_CLUSTER,
    T_LISTENER,
    T_ROUTE_CONFIGURATION,
    EnvoyResources,
    TranslateOptions,
)
from infergate.ir import DataplaneConfig, Listener


def config(*gateways: tuple[str, int]) -> EnvoyResources:
    listeners = tuple(Listener(f"gateway/default/{name}/http", "default", name, "0.0.0.0", port, ())
                      for name, port in gateways)
    # Gateway by Gateway, as --data-plane deployments does: two Gateways may share a port.
    return fleet_resources(DataplaneConfig(listeners=listeners), TranslateOptions())


class NodeEnvoy:
    """Plays one Envoy pod on an ADS stream: its node metadata names its Gateway and pod IP."""

    def __init__(self, address: tuple[str, int], node_id: str, pod_ip: str | None) -> None:
        self.channel = grpc.aio.insecure_channel(f"{address[0]}:{address[1]}")
        metadata = struct_pb2.Struct()
        metadata.update({"gateway": node_id, **({"pod_ip": pod_ip} if pod_ip else {})})
        self.node = base_pb2.Node(id=node_id, metadata=metadata)
        self.requests: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()
        self.responses: asyncio.Queue[discovery_pb2.DiscoveryResponse] = asyncio.Queue()
        self.first = True
        self._task: asyncio.Task[None] | None = None

    async def _requests(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while True:
            yield await self.requests.get()

    async def start(self) -> None:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel).StreamAggregatedResources(self._requests())

        async def read() -> None:
            async for response in call:
                await self.responses.put(response)

        self._task = asyncio.create_task(read())

    def send(self, type_url: str, *, version: str = "", nonce: str = "", names: tuple[str, ...] = (),
             error: str | None = None) -> None:
        request = discovery_pb2.DiscoveryRequest(type_url=type_url, version_info=version, response_nonce=nonce,
                                                 resource_names=list(names))
        if self.first:  # set_node_on_first_message_only, as the fleet bootstrap says
            request.node.CopyFrom(self.node)
            self.first = False
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self.requests.put_nowait(request)

    async def receive(self, type_url: str, timeout: float = 5.0) -> discovery_pb2.DiscoveryResponse:
        async with asyncio.timeout(timeout):
            while True:
                response = await self.responses.get()
                if response.type_url == type_url:
                    return response

    def ack(self, response: discovery_pb2.DiscoveryResponse, names: tuple[str, ...] = ()) -> None:
        self.send(response.type_url, version=response.version_info, nonce=response.nonce, names=names)

    async def sync(self) -> list[listener_pb2.Listener]:
        """Ask for clusters and listeners, ACK both (and the routes the listeners name); the listeners."""
        self.send(T_CLUSTER)
        self.ack(await self.receive(T_CLUSTER))
        self.send(T_LISTENER)
        lds = await self.receive(T_LISTENER)
        listeners = []
        for packed in lds.resources:
            listener = listener_pb2.Listener()
            packed.Unpack(listener)
            listeners.append(listener)
        self.ack(lds)
        routes = tuple(sorted(name for name in (_route_name(lst) for lst in listeners) if name))
        if routes:
            self.send(T_ROUTE_CONFIGURATION, names=routes)
            self.ack(await self.receive(T_ROUTE_CONFIGURATION), names=routes)
        return listeners

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.channel.close()


def _listeners(response: discovery_pb2.DiscoveryResponse) -> list[listener_pb2.Listener]:
    out = []
    for packed in response.resources:
        listener = listener_pb2.Listener()
        packed.Unpack(listener)
        out.append(listener)
    return out


def _route_name(listener: listener_pb2.Listener) -> str:
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            manager = hcm.HttpConnectionManager()
            if network_filter.typed_config.Unpack(manager):
                return str(manager.rds.route_config_name)
    return ""


def test_node_listeners_filter_by_gateway_and_bind_the_pod_ip() -> None:
    listeners: dict[str, dict[str, Any]] = {
        "gateway/default/a/http": {"name": "gateway/default/a/http",
                                   "address": {"socket_address": {"address": "0.0.0.0", "port_value": 80}}},
        "gateway/default/ab/http": {"name": "gateway/default/ab/http",
                                    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 80}}},
        "gateway/default/c/http": {"name": "gateway/default/c/http",
                                   "address": {"socket_address": {"address": "127.0.2.9", "port_value": 80}}},
        "infergate/invalid/500": {"name": "infergate/invalid/500", "internal_listener": {}},
    }
    view = node_listeners(listeners, NodeInfo("default/a", "127.0.3.4", "default/a"))
    assert sorted(view) == ["gateway/default/a/http", "infergate/invalid/500"]  # not "ab": a prefix is not a Gateway
    assert view["gateway/default/a/http"]["address"]["socket_address"] == {"address": "127.0.3.4", "port_value": 80}
    assert listeners["gateway/default/a/http"]["address"]["socket_address"]["address"] == "0.0.0.0"  # input intact
    # A specific bind address stays; a node that names nothing gets everything as it is.
    assert node_listeners(listeners, NodeInfo("x", "127.0.3.4", "default/c"))["gateway/default/c/http"][
        "address"]["socket_address"]["address"] == "127.0.2.9"
    assert node_listeners(listeners, NodeInfo("infergate")) == listeners


def test_route_names_are_the_rds_names_of_the_listeners() -> None:
    resources = config(("a", 8080), ("b", 8081)).by_type_url()
    assert route_names(resources[T_LISTENER]) == {"gateway/default/a/http", "gateway/default/b/http"}


@pytest.fixture
async def fleet_server() -> AsyncIterator[tuple[XdsServer, list[int]]]:
    changes: list[int] = []
    server = XdsServer(require_connection=False, on_nodes_changed=lambda: changes.append(1))
    async with server:
        yield server, changes


async def test_a_push_with_no_envoy_connected_returns_and_envoys_get_it_when_they_connect(
        fleet_server: tuple[XdsServer, list[int]]) -> None:
    server, _ = fleet_server
    await asyncio.wait_for(server.push(config(("a", 8080)), timeout=5), 3)
    envoy = NodeEnvoy(server.address, "default/a", "127.0.3.1")
    await envoy.start()
    try:
        listeners = await envoy.sync()
        assert [lst.address.socket_address.address for lst in listeners] == ["127.0.3.1"]
    finally:
        await envoy.close()


async def test_each_node_gets_its_gateways_listeners_at_its_pod_ip_and_its_ack_state_is_tracked(
        fleet_server: tuple[XdsServer, list[int]]) -> None:
    server, changes = fleet_server
    await server.push(config(("a", 8080), ("b", 8080)), timeout=5)
    a1, a2, b = (NodeEnvoy(server.address, "default/a", "127.0.3.1"),
                 NodeEnvoy(server.address, "default/a", "127.0.3.2"),
                 NodeEnvoy(server.address, "default/b", "127.0.3.3"))
    try:
        for envoy in (a1, a2, b):
            await envoy.start()
        got = {id(e): await e.sync() for e in (a1, a2)}
        assert [(lst.name, lst.address.socket_address.address, lst.address.socket_address.port_value)
                for lst in got[id(a1)]] == [("gateway/default/a/http", "127.0.3.1", 8080)]
        assert [lst.address.socket_address.address for lst in got[id(a2)]] == ["127.0.3.2"]
        await asyncio.sleep(0.1)
        assert server.synced_nodes() == {"default/a"}  # b has not asked for anything yet
        assert changes, "on_nodes_changed was not called when a node came in sync"
        b_listeners = await b.sync()
        assert [lst.name for lst in b_listeners] == ["gateway/default/b/http"]
        await asyncio.sleep(0.1)
        assert server.synced_nodes() == {"default/a", "default/b"}

        # A new configuration: a push waits for every connected node; one NACK fails it.
        push = asyncio.create_task(server.push(config(("a", 9090), ("b", 8080)), timeout=5))
        lds_b = await b.receive(T_LISTENER)
        b.ack(lds_b)
        lds_a1 = await a1.receive(T_LISTENER)
        a1.ack(lds_a1)
        lds_a2 = await a2.receive(T_LISTENER)
        a2.send(T_LISTENER, version=lds_a2.version_info, nonce=lds_a2.nonce, error="port 9090 in use")
        with pytest.raises(Exception, match="port 9090 in use"):
            await asyncio.wait_for(push, 5)
        # The NACKing node is the one out of sync; the snapshot went back to what the others run.
        assert [lst.address.socket_address.port_value for lst in _listeners(lds_a1)] == [9090]
        revert = await a1.receive(T_LISTENER)
        assert [lst.address.socket_address.port_value for lst in _listeners(revert)] == [8080]
        a1.ack(revert)
        b.ack(await b.receive(T_LISTENER))
        await asyncio.sleep(0.1)
        states = {n.info.pod_ip: n.in_sync for n in server.nodes()}
        assert states == {"127.0.3.1": True, "127.0.3.2": False, "127.0.3.3": True}
        assert server.synced_nodes() == {"default/a", "default/b"}
    finally:
        for envoy in (a1, a2, b):
            await envoy.close()


async def test_a_node_that_leaves_is_no_longer_synced(fleet_server: tuple[XdsServer, list[int]]) -> None:
    server, changes = fleet_server
    await server.push(config(("a", 8080)), timeout=5)
    envoy = NodeEnvoy(server.address, "default/a", "127.0.3.1")
    await envoy.start()
    await envoy.sync()
    for _ in range(50):
        if server.synced_nodes():
            break
        await asyncio.sleep(0.05)
    assert server.synced_nodes() == {"default/a"}
    before = len(changes)
    await envoy.close()
    for _ in range(100):
        if not server.synced_nodes():
            break
        await asyncio.sleep(0.05)
    assert server.synced_nodes() == frozenset()
    assert len(changes) > before


def test_each_gateways_listeners_are_translated_with_its_own_options() -> None:
    listeners = tuple(Listener(f"gateway/default/{name}/http", "default", name, "0.0.0.0", 8080, ())
                      for name in ("a", "b"))
    resources = fleet_resources(DataplaneConfig(listeners=listeners), TranslateOptions(),
                                {"default/a": TranslateOptions(stream_idle_timeout_s=7.0)}).by_type_url()
    timeouts = {name: resource["filter_chains"][0]["filters"][0]["typed_config"]["stream_idle_timeout"]
                for name, resource in resources[T_LISTENER].items() if name.startswith("gateway/")}
    assert timeouts == {"gateway/default/a/http": "7s", "gateway/default/b/http": "300s"}


async def test_a_restarted_server_answers_a_reconnecting_envoy_only_with_its_first_configuration() -> None:
    # Before the fix: a reconnecting Envoy got version "0" (nothing) at once and dropped its listeners.
    async with XdsServer(require_connection=False, hold_until_first_push=True) as server:
        envoy = NodeEnvoy(server.address, "default/a", "127.0.3.1")
        await envoy.start()
        try:
            envoy.send(T_CLUSTER, version="41", nonce="1-7")  # what it ran with the controller before
            envoy.send(T_LISTENER, version="41", nonce="1-8")
            with pytest.raises(TimeoutError):
                await envoy.receive(T_CLUSTER, timeout=0.5)
            push = asyncio.create_task(server.push(config(("a", 8080)), timeout=5))
            cds = await envoy.receive(T_CLUSTER)
            assert cds.resources, "the first answer is the configuration, not an empty snapshot"
            envoy.ack(cds)
            lds = await envoy.receive(T_LISTENER)
            assert [lst.name for lst in _listeners(lds)] == ["gateway/default/a/http"]
            envoy.ack(lds)
            routes = ("gateway/default/a/http",)
            envoy.send(T_ROUTE_CONFIGURATION, names=routes)
            envoy.ack(await envoy.receive(T_ROUTE_CONFIGURATION), names=routes)
            await asyncio.wait_for(push, 5)
            await asyncio.sleep(0.05)
            assert server.synced_nodes() == {"default/a"}
        finally:
            await envoy.close()


async def test_one_gateways_rejected_listeners_hold_back_no_other_gateway() -> None:
    from infergate.dataplane.remote import RemoteDataplane, RemoteDataplaneOptions

    listeners = tuple(Listener(f"gateway/default/{name}/http", "default", name, "0.0.0.0", port, ())
                      for name, port in (("a", 8080), ("b", 8081)))
    async with RemoteDataplane(RemoteDataplaneOptions(xds_host="127.0.0.1", xds_port=0, apply_timeout_s=5)) as dp:
        await dp.apply(DataplaneConfig(listeners=listeners[:1]))
        a, b = NodeEnvoy(dp.xds_address, "default/a", "127.0.3.1"), NodeEnvoy(dp.xds_address, "default/b", "127.0.3.2")
        try:
            for envoy in (a, b):
                await envoy.start()
                await envoy.sync()
            # A change of both Gateways; a's Envoy cannot bind its new port and says so.
            moved = (Listener("gateway/default/a/http", "default", "a", "0.0.0.0", 80, ()), listeners[1])
            apply = asyncio.create_task(dp.apply(DataplaneConfig(listeners=moved)))
            lds_a = await a.receive(T_LISTENER)
            a.send(T_LISTENER, version=lds_a.version_info, nonce=lds_a.nonce, error="cannot bind 127.0.3.1:80")
            lds_b = await b.receive(T_LISTENER)
            assert [lst.name for lst in _listeners(lds_b)] == ["gateway/default/b/http"]
            b.ack(lds_b)
            b.send(T_ROUTE_CONFIGURATION, names=("gateway/default/b/http",))
            b.ack(await b.receive(T_ROUTE_CONFIGURATION), names=("gateway/default/b/http",))
            await asyncio.wait_for(apply, 5)  # not XdsRejected: b's Envoy runs the new configuration
            await asyncio.sleep(0.05)
            assert dp.synced_gateways() == {"default/b"}
            assert dp.gateway_nacks() == {"default/a": "cannot bind 127.0.3.1:80"}
        finally:
            for envoy in (a, b):
                await envoy.close()
