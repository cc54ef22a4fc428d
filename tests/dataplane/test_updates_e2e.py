"""Config changes with real Envoy under continuous load: nothing dropped, ordering kept, fast.

Clients reuse kept-alive connections (the case where weights inlined in LDS would stay stale)
and stream SSE responses that span the change.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest
from httpx_sse import EventSource, SSEError

from infergate.dataplane import Dataplane
from infergate.dataplane.xds_translator import T_CLUSTER, T_ROUTE_CONFIGURATION
from infergate.ir import (
    Backend,
    DataplaneConfig,
    Endpoint,
    EndpointPicker,
    Listener,
    Pool,
    Route,
    RouteMatch,
    VirtualHost,
)
from infergate.util.net import free_port
from infergate.util.wait import async_wait_until

from .support import EchoServers, StampingEpp, running

pytestmark = pytest.mark.e2e


def make_pool(key: str, pods: EchoServers, picker: Endpoint) -> Pool:
    return Pool(
        key,
        "inference.networking.k8s.io",
        "default",
        key,
        (pods.port,),
        pods.endpoints,
        EndpointPicker(f"epp/{key}", (picker,)),
    )


def make_config(port: int, backends: list[Backend], pools: list[Pool]) -> DataplaneConfig:
    route = Route("route", RouteMatch(), tuple(backends))
    vhost = VirtualHost("vh", ("*",), (route,))
    return DataplaneConfig(
        listeners=(Listener("gateway/default/gw/http", "default", "gw", "127.0.0.1", port, (vhost,)),),
        pools=tuple(pools),
    )


@dataclass
class Load:
    """``clients`` loops, each on one kept-alive connection, streaming requests until stopped."""

    url: str
    clients: int = 4
    results: list[tuple[float, int, str, int]] = field(
        default_factory=list
    )  # (end time, status, epp, chunks)
    errors: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def _client(self) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=self.url, timeout=10, limits=limits) as client:
            for _ in range(10_000):  # bounded; the test stops it long before
                if self._stop.is_set():
                    return
                try:
                    async with client.stream(
                        "POST",
                        "/v1/completions",
                        json={"model": "m", "prompt": "p", "chunks": 3, "chunk_delay": 0.04},
                    ) as response:
                        events = [e.data async for e in EventSource(response).aiter_sse()] \
                            if response.status_code == 200 else []
                        chunks = [json.loads(data) for data in events if data != "[DONE]"]
                        epp = chunks[0]["epp"] if chunks else response.headers.get("x-epp", "")
                        self.results.append((time.monotonic(), response.status_code, epp, len(chunks)))
                except (httpx.HTTPError, SSEError) as exc:
                    self.errors.append(repr(exc))

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.clients)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), 20)


async def test_weight_change_under_streaming_load_drops_nothing_and_applies_within_a_second(
    dataplane: Dataplane,
) -> None:
    a, b = EchoServers(2), EchoServers(2)
    epp_a, epp_b = StampingEpp("epp-a", a.endpoints), StampingEpp("epp-b", b.endpoints)
    port = free_port()
    async with running(a, b, epp_a, epp_b):
        pools = [make_pool("pool/a", a, epp_a.endpoint), make_pool("pool/b", b, epp_b.endpoint)]
        await dataplane.apply(
            make_config(port, [Backend("pool", 50, "pool/a"), Backend("pool", 50, "pool/b")], pools)
        )
        load = Load(f"http://127.0.0.1:{port}")
        load.start()
        try:
            await async_wait_until(lambda: len({r[2] for r in load.results}) == 2 and len(load.results) >= 20, 15, what="both EPPs to serve")
            started = time.monotonic()
            await dataplane.apply(
                make_config(port, [Backend("pool", 0, "pool/a"), Backend("pool", 100, "pool/b")], pools)
            )
            applied = time.monotonic()
            # Requests that started after the ACK: give them time to finish, then stop.
            await async_wait_until(lambda: sum(1 for r in load.results if r[0] > applied + 0.5) >= 30, 15, what="30 responses after the change")
        finally:
            await load.stop()
    assert applied - started < 1.0, f"the change took {applied - started:.2f}s to be ACKed"
    assert load.errors == []
    assert Counter(r[1] for r in load.results) == {200: len(load.results)}
    assert all(r[3] == 3 for r in load.results), "a stream was cut short"
    # Every request that began after the change (ended > 0.5 s after it; each lasts ~0.15 s),
    # on the same kept-alive connections, went to pool b.
    late = [r for r in load.results if r[0] > applied + 0.5]
    assert late and {r[2] for r in late} == {"epp-b"}


async def test_moving_a_route_to_a_new_pool_is_make_before_break(dataplane: Dataplane) -> None:
    a, c = EchoServers(2), EchoServers(2)
    epp_a, epp_c = StampingEpp("epp-a", a.endpoints), StampingEpp("epp-c", c.endpoints)
    port = free_port()
    async with running(a, c, epp_a, epp_c):
        await dataplane.apply(
            make_config(port, [Backend("pool", 1, "pool/a")], [make_pool("pool/a", a, epp_a.endpoint)])
        )
        load = Load(f"http://127.0.0.1:{port}")
        load.start()
        try:
            await async_wait_until(lambda: len(load.results) >= 10, 15, what="10 responses")
            mark = len(dataplane.xds.events)
            # pool/c's cluster does not exist yet, and pool/a's disappears in the same change.
            await dataplane.apply(
                make_config(port, [Backend("pool", 1, "pool/c")], [make_pool("pool/c", c, epp_c.endpoint)])
            )
            applied = time.monotonic()
            await async_wait_until(lambda: sum(1 for r in load.results if r[0] > applied + 0.3) >= 20, 15, what="20 responses after the change")
        finally:
            await load.stop()
    assert load.errors == [] and {r[1] for r in load.results} == {200}
    assert {r[2] for r in load.results if r[0] > applied + 0.3} == {"epp-c"}

    # Busy clusters retire once idle: pool/a and its EPP's cluster are gone soon after the load.
    await async_wait_until(lambda: not {"pool/a", "epp/pool/a"} & set(dataplane.xds.resources(T_CLUSTER)), 10, what="pool/a's clusters to go")
    events = list(dataplane.xds.events)[mark:]

    def first(kind: str, type_url: str, has: str | None = None, lacks: str | None = None) -> int:
        for index, event in enumerate(events):
            if event.kind == kind and event.type_url == type_url:
                text = " ".join(event.names) if type_url == T_CLUSTER else ""
                if (has is None or has in event.names or has in text) and (
                    lacks is None or lacks not in event.names
                ):
                    return index
        raise AssertionError(f"no {kind} {type_url} has={has} lacks={lacks} in {events}")

    cluster_c_acked = first("ack", T_CLUSTER, has="pool/c")
    route_sent = first("sent", T_ROUTE_CONFIGURATION)
    route_acked = first("ack", T_ROUTE_CONFIGURATION)
    cluster_a_removed = first("sent", T_CLUSTER, lacks="pool/a")
    assert cluster_c_acked < route_sent, "the route to pool/c was sent before Envoy had its cluster"
    assert route_acked < cluster_a_removed, "pool/a's cluster was removed while a route still used it"


async def test_endpoint_change_reaches_envoy_without_touching_routes(dataplane: Dataplane) -> None:
    a = EchoServers(3)
    epp_a = StampingEpp("epp-a", a.endpoints)
    port = free_port()
    async with running(a, epp_a):
        await dataplane.apply(
            make_config(port, [Backend("pool", 1, "pool/a")], [make_pool("pool/a", a, epp_a.endpoint)])
        )
        routes_version = dataplane.xds.versions[T_ROUTE_CONFIGURATION]
        smaller = Pool(
            "pool/a",
            "inference.networking.k8s.io",
            "default",
            "pool/a",
            (a.port,),
            a.endpoints[:1],
            EndpointPicker("epp/pool/a", (epp_a.endpoint,), "FailOpen"),
        )
        await dataplane.apply(make_config(port, [Backend("pool", 1, "pool/a")], [smaller]))
        assert (
            dataplane.xds.versions[T_ROUTE_CONFIGURATION] != routes_version
        )  # failure mode lives on the route
        await epp_a.stop()  # fail-open round robin now shows the membership Envoy has
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            served = {
                (await client.post("/v1/completions", json={"model": "m"})).json()["server"] for _ in range(6)
            }
    assert served == {f"{a.addresses[0]}:{a.port}"}


async def test_a_listener_change_does_not_cut_a_long_stream(dataplane: Dataplane) -> None:
    a = EchoServers(1)
    epp_a = StampingEpp("epp-a", a.endpoints)
    port = free_port()
    async with running(a, epp_a):
        pools = [make_pool("pool/a", a, epp_a.endpoint)]
        ir = make_config(port, [Backend("pool", 1, "pool/a")], pools)
        await dataplane.apply(ir)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:

            async def stream() -> list[str]:
                body = {"model": "m", "chunks": 16, "chunk_delay": 0.25}  # 4 s, longer than a short drain
                async with client.stream("POST", "/v1/completions", json=body) as response:
                    return [event.data async for event in EventSource(response).aiter_sse()]

            task = asyncio.create_task(stream())
            await asyncio.sleep(0.4)
            listener = ir.listeners[0]
            changed = DataplaneConfig(
                listeners=(Listener(**{**listener.__dict__, "body_based_routing": False}),), pools=ir.pools
            )
            await dataplane.apply(changed)  # the listener's filter chain changes: Envoy drains the old one
            after = await client.post("/v1/completions", json={"model": "m"})
            lines = await task
    assert after.status_code == 200
    assert len(lines) == 17 and lines[-1] == "[DONE]"
