"""The ADS server's protocol handling, driven by a scripted gRPC client (no Envoy).

The client plays Envoy's side of state-of-the-world ADS: initial requests, ACKs (the
latest nonce, no error), NACKs (``error_detail``), subscription changes on EDS/RDS.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from infergate.dataplane.xds_server import XdsRejected, XdsServer, XdsTimeout
from infergate.dataplane.xds_translator import (
    T_CLUSTER,
    T_CLUSTER_LOAD_ASSIGNMENT,
    T_LISTENER,
    EnvoyResources,
    translate,
)
from infergate.ir import DataplaneConfig, Endpoint, EndpointPicker, Pool

from .fake_ads import FakeEnvoy


def resources(*pool_names: str) -> EnvoyResources:
    pools = tuple(
        Pool(f"pool/{n}", "g", "d", n, (80,), (Endpoint("10.0.0.1", 80),), EndpointPicker(f"epp/{n}", ()))
        for n in pool_names
    )
    return translate(DataplaneConfig(pools=pools))


@pytest.fixture
async def server() -> AsyncIterator[XdsServer]:
    async with XdsServer() as xds:
        yield xds


async def test_push_waits_for_the_ack_of_clusters_and_of_the_endpoints_envoy_subscribes_to(
    server: XdsServer,
) -> None:
    envoy = FakeEnvoy(server.address)
    await envoy.start()
    try:
        envoy.send(T_CLUSTER)
        envoy.send(T_LISTENER)
        initial = await envoy.receive(T_CLUSTER)
        envoy.ack(initial)
        envoy.ack(await envoy.receive(T_LISTENER))
        push = asyncio.create_task(server.push(resources("a"), timeout=5))
        cds = await envoy.receive(T_CLUSTER)
        assert {"pool/a", "epp/a"} <= {r.type_url and _name(r) for r in cds.resources}
        envoy.ack(cds)
        await asyncio.sleep(0.2)
        assert not push.done(), "returned before Envoy had the endpoints of the new clusters"
        # Envoy subscribes to the EDS clusters it now has; the server answers at once.
        envoy.send(T_CLUSTER_LOAD_ASSIGNMENT, names=("pool/a", "epp/a"))
        eds = await envoy.receive(T_CLUSTER_LOAD_ASSIGNMENT)
        assert sorted(_cla_name(r) for r in eds.resources) == ["epp/a", "pool/a"]
        # A request with an old nonce is not an ACK.
        envoy.send(
            T_CLUSTER_LOAD_ASSIGNMENT, version=eds.version_info, nonce="stale", names=("pool/a", "epp/a")
        )
        await asyncio.sleep(0.1)
        assert not push.done()
        envoy.ack(eds, names=("pool/a", "epp/a"))
        versions = await asyncio.wait_for(push, 5)
        assert versions[T_CLUSTER] == cds.version_info
    finally:
        await envoy.close()


async def test_a_nack_raises_with_the_reason_and_the_snapshot_reverts(server: XdsServer) -> None:
    envoy = FakeEnvoy(server.address)
    await envoy.start()
    try:
        envoy.send(T_CLUSTER)
        envoy.ack(await envoy.receive(T_CLUSTER))
        push = asyncio.create_task(server.push(resources("a"), timeout=5))
        cds = await envoy.receive(T_CLUSTER)
        envoy.send(T_CLUSTER, version="", nonce=cds.nonce, error="cluster pool/a: bad thing")
        with pytest.raises(XdsRejected, match="bad thing") as rejected:
            await asyncio.wait_for(push, 5)
        assert rejected.value.node == "fake-envoy"
        assert server.last_nack is not None and server.last_nack.reason == "cluster pool/a: bad thing"
        # The last good config (here: the initial, empty one) is what the server serves now:
        # the clusters only the rejected config added are removed by the next CDS response.
        removal = await envoy.receive(T_CLUSTER)
        assert int(removal.version_info) > int(cds.version_info)
        assert [_name(r) for r in removal.resources] == []
        envoy.ack(removal)
        await asyncio.sleep(0.1)
        assert server.resources(T_CLUSTER) == {}
    finally:
        await envoy.close()


async def test_push_without_any_envoy_times_out_with_a_clear_error(server: XdsServer) -> None:
    with pytest.raises(XdsTimeout, match="no Envoy connected"):
        await server.push(resources("a"), timeout=0.3)


def _name(resource: object) -> str:
    from envoy.config.cluster.v3 import cluster_pb2

    cluster = cluster_pb2.Cluster()
    resource.Unpack(cluster)  # type: ignore[attr-defined]
    return cluster.name


def _cla_name(resource: object) -> str:
    from envoy.config.endpoint.v3 import endpoint_pb2

    cla = endpoint_pb2.ClusterLoadAssignment()
    resource.Unpack(cla)  # type: ignore[attr-defined]
    return cla.cluster_name


async def test_a_rejected_change_to_an_existing_cluster_is_reverted_to_its_acked_definition(
    server: XdsServer,
) -> None:
    from envoy.config.cluster.v3 import cluster_pb2

    from infergate.dataplane.xds_translator import TranslateOptions

    envoy = FakeEnvoy(server.address)
    await envoy.start()
    names = ("epp/a", "pool/a")
    try:
        envoy.send(T_CLUSTER)
        envoy.ack(await envoy.receive(T_CLUSTER))
        first = asyncio.create_task(server.push(resources("a"), timeout=5))
        envoy.ack(await envoy.receive(T_CLUSTER))
        envoy.send(T_CLUSTER_LOAD_ASSIGNMENT, names=names)
        envoy.ack(await envoy.receive(T_CLUSTER_LOAD_ASSIGNMENT), names=names)
        await asyncio.wait_for(first, 5)

        pools = (
            Pool("pool/a", "g", "d", "a", (80,), (Endpoint("10.0.0.1", 80),), EndpointPicker("epp/a", ())),
        )
        slower = translate(
            DataplaneConfig(pools=pools), options=TranslateOptions(upstream_connect_timeout_s=3)
        )
        second = asyncio.create_task(server.push(slower, timeout=5))
        changed = await envoy.receive(T_CLUSTER)
        envoy.send(T_CLUSTER, nonce=changed.nonce, error="no")
        with pytest.raises(XdsRejected):
            await asyncio.wait_for(second, 5)
        reverted = await envoy.receive(T_CLUSTER)
        timeouts = {}
        for resource in reverted.resources:
            cluster = cluster_pb2.Cluster()
            resource.Unpack(cluster)
            timeouts[cluster.name] = cluster.connect_timeout.ToTimedelta().total_seconds()
        assert timeouts["pool/a"] == 1.0  # the ACKed definition, not the rejected 3 s one
    finally:
        await envoy.close()
