"""The data plane with real Envoy: per-pool EPPs under a split, invalid shares, failure modes,
body-based routing, header stripping, NACKs.

Pods are ``EchoServers`` on their own loopback addresses; each pool's picker is a
``StampingEpp`` that stamps its name, so every response says which EPP routed it.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any

import httpx
import pytest

from infergate.dataplane import Dataplane
from infergate.dataplane.xds_server import XdsRejected
from infergate.ir import (
    Backend,
    DataplaneConfig,
    Endpoint,
    EndpointPicker,
    FailureMode,
    HeaderMatch,
    Listener,
    Pool,
    Route,
    RouteMatch,
    VirtualHost,
)
from infergate.util.net import free_port

from .support import EchoServers, StampingEpp, running

pytestmark = pytest.mark.e2e


def pool(key: str, pods: EchoServers, picker: Endpoint | None, mode: FailureMode = "FailClose") -> Pool:
    return Pool(
        key=key,
        group="inference.networking.k8s.io",
        namespace="default",
        name=key.rsplit("/", 1)[-1],
        target_ports=(pods.port,),
        endpoints=pods.endpoints,
        picker=EndpointPicker(f"epp/{key}", (picker,) if picker else (), mode),
    )


def config(port: int, routes: list[Route], pools: list[Pool], *, bbr: bool = True) -> DataplaneConfig:
    listener = Listener(
        key="gateway/default/gw/http",
        gateway_namespace="default",
        gateway_name="gw",
        address="127.0.0.1",
        port=port,
        virtual_hosts=(VirtualHost("gateway/default/gw/http/*", ("*",), tuple(routes)),),
        body_based_routing=bbr,
    )
    return DataplaneConfig(listeners=(listener,), pools=tuple(pools))


def split(key: str, *backends: Backend, path: str = "/") -> Route:
    return Route(key=key, match=RouteMatch(path=path), backends=tuple(backends))


def dead_port() -> Endpoint:
    return Endpoint("127.0.0.1", free_port())  # nothing listens there


async def post_many(
    url: str, count: int, body: dict[str, Any] | None = None, concurrency: int = 8
) -> list[httpx.Response]:
    body = body or {"model": "m", "prompt": "hello"}
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:

        async def one() -> httpx.Response:
            async with semaphore:
                return await client.post("/v1/completions", json=body)

        return list(await asyncio.gather(*(one() for _ in range(count))))


def tolerance(p: float, n: int) -> float:
    return max(0.10, 3 * math.sqrt(p * (1 - p) / n))  # upstream's weighted-pool test tolerance


async def test_weighted_split_each_pool_consults_its_own_epp(dataplane: Dataplane) -> None:
    a, b = EchoServers(2), EchoServers(2)
    epp_a, epp_b = StampingEpp("epp-a", a.endpoints), StampingEpp("epp-b", b.endpoints)
    port = free_port()
    async with running(a, b, epp_a, epp_b):
        pools = [pool("pool/a", a, epp_a.endpoint), pool("pool/b", b, epp_b.endpoint)]
        route = split("r", Backend("pool", 50, "pool/a"), Backend("pool", 50, "pool/b"))
        await dataplane.apply(config(port, [route], pools))
        responses = await post_many(f"http://127.0.0.1:{port}", 300)
    assert [r.status_code for r in responses] == [200] * 300
    by_epp = Counter(r.json()["epp"] for r in responses)
    for r in responses:
        info = r.json()
        pods = a if info["epp"] == "epp-a" else b
        host = info["server"].rsplit(":", 1)[0]
        assert host in pods.addresses, f"{info['epp']} routed to {info['server']}, outside its pool"
        assert info["destination"] == info["server"]  # served by the endpoint the EPP picked
    assert abs(by_epp["epp-a"] / 300 - 0.5) <= tolerance(0.5, 300), by_epp
    assert epp_a.picked == by_epp["epp-a"] and epp_b.picked == by_epp["epp-b"]


async def test_invalid_backend_share_answers_500_and_the_rest_is_served(dataplane: Dataplane) -> None:
    a = EchoServers(2)
    epp_a = StampingEpp("epp-a", a.endpoints)
    port = free_port()
    async with running(a, epp_a):
        route = split("r", Backend("pool", 70, "pool/a"), Backend("invalid", 30, invalid_status=500))
        await dataplane.apply(config(port, [route], [pool("pool/a", a, epp_a.endpoint)]))
        responses = await post_many(f"http://127.0.0.1:{port}", 300)
    codes = Counter(r.status_code for r in responses)
    assert set(codes) == {200, 500}, codes
    assert abs(codes[500] / 300 - 0.3) <= tolerance(0.3, 300), codes
    assert all(r.json()["epp"] == "epp-a" for r in responses if r.status_code == 200)


async def test_fail_open_serves_inside_the_pool_and_fail_close_answers_500_with_the_epp_down(
    dataplane: Dataplane,
) -> None:
    a, b = EchoServers(2), EchoServers(2)
    port = free_port()
    async with running(a, b):
        routes = [
            split("open", Backend("pool", 1, "pool/open"), path="/open"),
            split("close", Backend("pool", 1, "pool/close"), path="/close"),
        ]
        pools = [
            pool("pool/open", a, dead_port(), "FailOpen"),
            pool("pool/close", b, dead_port(), "FailClose"),
        ]
        await dataplane.apply(config(port, routes, pools))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            opened = [await client.post("/open/v1/completions", json={"model": "m"}) for _ in range(6)]
            closed = [await client.post("/close/v1/completions", json={"model": "m"}) for _ in range(3)]
            # A client cannot steer a request out of the pool by naming a destination itself.
            spoofed = [
                await client.post(
                    "/open/v1/completions",
                    json={"model": "m"},
                    headers={"x-gateway-destination-endpoint": f"{b.addresses[0]}:{b.port}"},
                )
                for _ in range(4)
            ]
    assert [r.status_code for r in opened] == [200] * 6
    served = {r.json()["server"].rsplit(":", 1)[0] for r in opened}
    assert served == set(a.addresses)  # round robin over the pool's own pods
    assert [r.status_code for r in closed] == [500] * 3  # Envoy's default, as upstream (docs/security.md)
    assert [r.status_code for r in spoofed] == [200] * 4
    assert all(r.json()["server"].rsplit(":", 1)[0] in a.addresses for r in spoofed)
    assert all(r.json()["destination"] == "" for r in spoofed)


def model_b_to_pool_b() -> Route:
    """A route for the requests whose model header (which BBR sets from the body) is ``model-b``."""
    return Route(
        "model-b",
        RouteMatch(headers=(HeaderMatch("X-Gateway-Model-Name", "model-b"),)),
        (Backend("pool", 1, "pool/b"),),
    )


async def test_body_based_routing_picks_the_route_by_the_body_model(dataplane: Dataplane) -> None:
    a, b = EchoServers(1), EchoServers(1)
    epp_a, epp_b = StampingEpp("epp-a", a.endpoints), StampingEpp("epp-b", b.endpoints)
    port = free_port()
    async with running(a, b, epp_a, epp_b):
        by_model = model_b_to_pool_b()
        default = split("default", Backend("pool", 1, "pool/a"))
        pools = [pool("pool/a", a, epp_a.endpoint), pool("pool/b", b, epp_b.endpoint)]
        await dataplane.apply(config(port, [by_model, default], pools))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            to_b = await client.post("/v1/completions", json={"model": "model-b", "prompt": "x"})
            to_a = await client.post("/v1/completions", json={"model": "model-a", "prompt": "x"})
            # The body wins over a client-supplied header (BBR overwrites it).
            body_wins = await client.post(
                "/v1/completions", json={"model": "model-a"}, headers={"x-gateway-model-name": "model-b"}
            )
            # Without a body, a client's header still routes (as with upstream's BBR).
            header_only = await client.get("/v1/models", headers={"x-gateway-model-name": "model-b"})
            no_model = await client.post("/v1/completions", json={"prompt": "no model"})
    assert (to_b.status_code, to_b.json()["epp"], to_b.json()["model_header"]) == (200, "epp-b", "model-b")
    assert (to_a.status_code, to_a.json()["epp"], to_a.json()["model_header"]) == (200, "epp-a", "model-a")
    assert (body_wins.json()["epp"], body_wins.json()["model_header"]) == ("epp-a", "model-a")
    assert header_only.json()["epp"] == "epp-b"
    assert (no_model.status_code, no_model.json()["epp"]) == (200, "epp-a")


async def test_body_based_routing_off_ignores_the_body(dataplane: Dataplane) -> None:
    a, b = EchoServers(1), EchoServers(1)
    epp_a, epp_b = StampingEpp("epp-a", a.endpoints), StampingEpp("epp-b", b.endpoints)
    port = free_port()
    async with running(a, b, epp_a, epp_b):
        by_model = model_b_to_pool_b()
        pools = [pool("pool/a", a, epp_a.endpoint), pool("pool/b", b, epp_b.endpoint)]
        await dataplane.apply(
            config(port, [by_model, split("default", Backend("pool", 1, "pool/a"))], pools, bbr=False)
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            response = await client.post("/v1/completions", json={"model": "model-b"})
    assert response.json()["epp"] == "epp-a"


async def test_unmatched_path_is_404_and_direct_status_routes_answer(dataplane: Dataplane) -> None:
    a = EchoServers(1)
    epp_a = StampingEpp("epp-a", a.endpoints)
    port = free_port()
    async with running(a, epp_a):
        routes = [
            split("pool", Backend("pool", 1, "pool/a"), path="/v1"),
            Route("gone", RouteMatch(path="/gone"), (), direct_status=503),
        ]
        await dataplane.apply(config(port, routes, [pool("pool/a", a, epp_a.endpoint)]))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            missing = await client.post("/nothing-here", json={"model": "m"})
            gone = await client.get("/gone/x")
            ok = await client.post("/v1/completions", json={"model": "m"})
    assert (missing.status_code, gone.status_code, ok.status_code) == (404, 503, 200)
    assert epp_a.picked == 1  # the EPP is consulted only for pool routes


async def test_a_nack_is_reported_and_the_last_good_config_keeps_serving(dataplane: Dataplane) -> None:
    a = EchoServers(1)
    epp_a = StampingEpp("epp-a", a.endpoints)
    port = free_port()
    async with running(a, epp_a):
        good = config(port, [split("r", Backend("pool", 1, "pool/a"))], [pool("pool/a", a, epp_a.endpoint)])
        await dataplane.apply(good)
        bad_route = Route(
            "bad",
            RouteMatch(path_type="RegularExpression", path="(unclosed"),
            (Backend("pool", 1, "pool/a"),),
        )
        bad = config(port, [bad_route], [pool("pool/a", a, epp_a.endpoint)])
        with pytest.raises(XdsRejected, match="RouteConfiguration") as rejected:
            await dataplane.apply(bad)
        assert "unclosed" in rejected.value.reason or "regex" in rejected.value.reason.lower()
        assert dataplane.last_error is not None and dataplane.xds.last_nack is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            still = await client.post("/v1/completions", json={"model": "m"})
        assert still.status_code == 200
        await dataplane.apply(good)  # the server serves the good config again, and accepts the next one
        assert dataplane.last_error is None


async def test_a_listener_port_already_in_use_is_rejected_with_the_reason(dataplane: Dataplane) -> None:
    import socket

    a = EchoServers(1)
    epp_a = StampingEpp("epp-a", a.endpoints)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with running(a, epp_a):
            ir = config(port, [split("r", Backend("pool", 1, "pool/a"))], [pool("pool/a", a, epp_a.endpoint)])
            with pytest.raises(XdsRejected, match="Listener") as rejected:
                await dataplane.apply(ir)
    assert (
        "address already in use" in rejected.value.reason.lower() or "bind" in rejected.value.reason.lower()
    )


async def test_access_log_names_route_cluster_upstream_and_the_epp_pick(dataplane: Dataplane) -> None:
    a = EchoServers(1)
    epp_a = StampingEpp("epp-a", a.endpoints)
    port = free_port()
    async with running(a, epp_a):
        await dataplane.apply(
            config(
                port, [split("r-logged", Backend("pool", 1, "pool/a"))], [pool("pool/a", a, epp_a.endpoint)]
            )
        )
        async with httpx.AsyncClient(timeout=10) as client:
            assert (
                await client.post(f"http://127.0.0.1:{port}/v1/completions", json={"model": "logged-model"})
            ).status_code == 200
        pod = f"{a.addresses[0]}:{a.port}"
        line = ""
        for _ in range(150):  # Envoy flushes access logs in batches
            line = next(
                (x for x in dataplane.envoy.log_path.read_text().splitlines() if "route=r-logged" in x), ""
            )
            if line:
                break
            await asyncio.sleep(0.1)
    assert "POST /v1/completions 200" in line
    assert f"cluster=pool/a upstream={pod}" in line
    assert "model=logged-model" in line
    assert f'"x-gateway-destination-endpoint":"{pod}"' in line  # the EPP's envoy.lb metadata


async def test_a_dead_epp_replica_leaves_rotation_and_fail_close_requests_succeed(
    dataplane: Dataplane,
) -> None:
    a = EchoServers(1)
    epp_a = StampingEpp("epp-a", a.endpoints)
    port = free_port()
    async with running(a, epp_a):
        two_replicas = Pool(
            "pool/a", "g", "default", "a", (a.port,), a.endpoints,
            EndpointPicker("epp/a", (epp_a.endpoint, dead_port()), "FailClose"),
        )  # fmt: skip
        await dataplane.apply(config(port, [split("r", Backend("pool", 1, "pool/a"))], [two_replicas]))
        await asyncio.sleep(1.5)  # one health-check round
        responses = await post_many(f"http://127.0.0.1:{port}", 40)
    assert [r.status_code for r in responses] == [200] * 40  # without health checks about half get 503
    assert epp_a.picked == 40


async def test_rejected_endpoints_stop_the_change_before_any_route_uses_them(dataplane: Dataplane) -> None:
    a = EchoServers(1)
    epp_a = StampingEpp("epp-a", a.endpoints)
    port = free_port()
    async with running(a, epp_a):
        good = config(port, [split("r", Backend("pool", 1, "pool/a"))], [pool("pool/a", a, epp_a.endpoint)])
        await dataplane.apply(good)
        broken = Pool(
            "pool/b", "g", "default", "b", (80,), (Endpoint("not-an-ip", 80),), EndpointPicker("epp/b", ())
        )
        moved = config(port, [split("r", Backend("pool", 1, "pool/b"))], [broken])
        with pytest.raises(XdsRejected, match="ClusterLoadAssignment"):
            await dataplane.apply(moved)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            still = [await client.post("/v1/completions", json={"model": "m"}) for _ in range(3)]
        assert [(r.status_code, r.json()["epp"]) for r in still] == [(200, "epp-a")] * 3  # route never moved
        await dataplane.apply(good)
