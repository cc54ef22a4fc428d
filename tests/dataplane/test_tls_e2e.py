"""TLS termination through real Envoy over xDS: certificates are SDS Secrets on ADS, SNI picks
a filter chain, and a rotated certificate is a new Secret version with no listener update."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from infergate.dataplane import Dataplane
from infergate.dataplane.xds_translator import T_LISTENER, T_SECRET
from infergate.ir import (
    Backend,
    Certificate,
    DataplaneConfig,
    Listener,
    Route,
    RouteMatch,
    Service,
    TLSFilterChain,
    VirtualHost,
)
from infergate.util.net import free_port, random_loopback_block
from infergate.util.wait import async_wait_until

from ..controller.tls_support import ServerCertificate, TestCA
from .support import EchoServers, running

pytestmark = pytest.mark.e2e

A, B = "a.example.test", "b.example.test"


def config(address: str, port: int, echo: EchoServers, a: ServerCertificate, b: ServerCertificate) -> DataplaneConfig:
    (endpoint,) = echo.endpoints
    service = Service("service/default/echo", "default", "echo", endpoint.port, (endpoint,))
    route = Route("httproute/default/r/rule/0/match/0", RouteMatch(), (Backend("service", 1, service.key),))
    return DataplaneConfig(
        listeners=(Listener(
            key="gateway/default/gw/a", gateway_namespace="default", gateway_name="gw", address=address, port=port,
            virtual_hosts=(VirtualHost("default/gw/*", ("*",), (route,)),),
            body_based_routing=False,
            tls=(TLSFilterChain("gateway/default/gw/a", (A,), ("secret/default/a",)),
                 TLSFilterChain("gateway/default/gw/b", (B,), ("secret/default/b",))),
        ),),
        services=(service,),
        certificates=(Certificate("secret/default/a", a.certificate_pem, a.key_pem),
                      Certificate("secret/default/b", b.certificate_pem, b.key_pem)),
    )


async def test_sni_picks_the_certificate_and_rotation_sends_only_a_secret(dataplane: Dataplane) -> None:
    ca = TestCA()
    a, b = ca.issue(A), ca.issue(B)
    port = free_port()
    (address,) = random_loopback_block(1, port)
    echo = EchoServers(1)
    async with running(echo):
        await dataplane.apply(config(address, port, echo, a, b))  # raises unless Envoy ACKed
        # Listeners warm once their SDS secrets arrive: wait for the first handshake.
        async def serving() -> bool:
            try:
                return bool(await asyncio.to_thread(ca.peer_certificate, address, port, A))
            except OSError:
                return False

        await async_wait_until(serving, 10, interval=0.1, what="the HTTPS listener")
        assert await asyncio.to_thread(ca.peer_certificate, address, port, A) == a.der
        assert await asyncio.to_thread(ca.peer_certificate, address, port, B) == b.der

        async def name_a(request: httpx.Request) -> None:
            request.headers["host"] = A
            request.extensions["sni_hostname"] = A

        async with httpx.AsyncClient(verify=ca.ssl_context(), timeout=10,
                                     event_hooks={"request": [name_a]}) as client:
            response = await client.get(f"https://{address}:{port}/hello")
            assert response.status_code == 200 and response.json()["path"] == "/hello"

            listener_version = dataplane.xds.versions[T_LISTENER]
            events_before = len(dataplane.xds.events)
            rotated = ca.issue(A)
            await dataplane.apply(config(address, port, echo, rotated, b))
            sent = [e for e in list(dataplane.xds.events)[events_before:] if e.kind == "sent"]
            assert {e.type_url for e in sent} == {T_SECRET}, sent  # no listener, route or cluster update
            assert dataplane.xds.versions[T_LISTENER] == listener_version

            async def rotated_on_new_connections() -> bool:
                return bool(await asyncio.to_thread(ca.peer_certificate, address, port, A) == rotated.der)

            await async_wait_until(rotated_on_new_connections, 10, interval=0.1, what="the rotated certificate")
            # The kept-alive connection made before the rotation still works.
            response = await client.get(f"https://{address}:{port}/again")
            assert response.status_code == 200
            assert await asyncio.to_thread(ca.peer_certificate, address, port, B) == b.der
