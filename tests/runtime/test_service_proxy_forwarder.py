"""The service proxy's TCP forwarder with real sockets on loopback: round robin, a dead backend
skipped, no backend, the connection limit, the idle timeout, half-close, clean shutdown; and
the Service -> listeners rules (selector, readiness, named target ports)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from infergate.apiserver.runtime.forwarder import ForwardLimits, TcpForwarder
from infergate.apiserver.runtime.service_endpoints import listeners_of, pod_serving, target_port
from infergate.util.net import free_port, random_loopback_block

from ..support.eventually import async_eventually


def address() -> str:
    """A loopback address of its own (tests run concurrently)."""
    return random_loopback_block(1, 9, rng=random.Random())[0]


@contextlib.asynccontextmanager
async def echo_server(name: str, host: str = "127.0.0.1") -> AsyncIterator[tuple[str, int]]:
    """Answers each line with ``name:line``; on EOF from the client, writes ``name:eof`` and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(f"{name}:{line.decode().strip()}\n".encode())
                await writer.drain()
            writer.write(f"{name}:eof\n".encode())
            await writer.drain()
        finally:
            writer.close()

    port = free_port(host)
    server = await asyncio.start_server(handle, host, port)
    try:
        yield host, port
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def forwarder(limits: ForwardLimits | None = None) -> AsyncIterator[TcpForwarder]:
    host = address()
    fwd = TcpForwarder(host, free_port(host), limits)
    await fwd.start()
    try:
        yield fwd
    finally:
        await fwd.stop()


async def ask(fwd: TcpForwarder, text: str) -> str:
    reader, writer = await asyncio.open_connection(fwd.host, fwd.port)
    try:
        writer.write(f"{text}\n".encode())
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
    finally:
        writer.close()


async def test_round_robin_over_backends_and_a_dead_one_is_skipped() -> None:
    async with echo_server("a") as a, echo_server("b") as b, forwarder() as fwd:
        fwd.set_backends([a, b])
        answers = [await ask(fwd, f"q{i}") for i in range(4)]
        assert answers == ["a:q0", "b:q1", "a:q2", "b:q3"]
        dead = ("127.0.0.1", free_port())  # nothing listens there
        fwd.set_backends([dead, a])
        assert {await ask(fwd, "x") for _ in range(3)} == {"a:x"}
        assert fwd.stats.connect_failures >= 1 and fwd.stats.forwarded == 7


async def test_no_backend_closes_the_connection() -> None:
    async with forwarder() as fwd:
        reader, writer = await asyncio.open_connection(fwd.host, fwd.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert fwd.stats.no_backend == 1


async def test_half_close_reaches_the_backend_and_its_answer_comes_back() -> None:
    async with echo_server("a") as a, forwarder() as fwd:
        fwd.set_backends([a])
        reader, writer = await asyncio.open_connection(fwd.host, fwd.port)
        writer.write(b"one\n")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"a:one\na:eof\n"
        writer.close()


async def test_connection_limit_and_idle_timeout_and_stop_closes_connections() -> None:
    async with echo_server("a") as a, forwarder(ForwardLimits(max_connections=2, idle_timeout_s=0.5)) as fwd:
        fwd.set_backends([a])
        opened = [await asyncio.open_connection(fwd.host, fwd.port) for _ in range(2)]
        for reader, writer in opened:
            writer.write(b"hi\n")
            assert await asyncio.wait_for(reader.readline(), 5) == b"a:hi\n"
        assert fwd.active == 2
        reader3, writer3 = await asyncio.open_connection(fwd.host, fwd.port)  # over the limit: closed at once
        assert await asyncio.wait_for(reader3.read(), 5) == b""
        writer3.close()
        assert fwd.stats.rejected == 1
        # idle for longer than idle_timeout_s: both connections are closed by the forwarder
        for reader, writer in opened:
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        # the client sees EOF when the forwarder closes its side; the forwarder then closes the
        # backend side (up to a second) before the connection stops counting
        await async_eventually(lambda: fwd.active == 0, 5.0, "both idle connections released", interval=0.02)

        reader, writer = await asyncio.open_connection(fwd.host, fwd.port)
        writer.write(b"again\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"a:again\n"
        await fwd.stop()  # stops listening, closes the open connection
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection(fwd.host, fwd.port)


async def test_a_streamed_answer_is_not_idle() -> None:
    """One direction quiet (the client after its request) while the other streams: kept open."""

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        for i in range(8):
            writer.write(f"chunk{i}\n".encode())
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.close()

    port = free_port()
    server = await asyncio.start_server(stream, "127.0.0.1", port)
    try:
        async with forwarder(ForwardLimits(idle_timeout_s=0.3)) as fwd:
            fwd.set_backends([("127.0.0.1", port)])
            reader, writer = await asyncio.open_connection(fwd.host, fwd.port)
            writer.write(b"go\n")
            body = await asyncio.wait_for(reader.read(), 5)
            assert body.decode().split() == [f"chunk{i}" for i in range(8)]
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        ForwardLimits(max_connections=0)


# -- Service -> listeners -------------------------------------------------------------------------

def pod(name: str, ip: str, labels: dict[str, str], ready: bool = True, ports: list[dict[str, Any]] | None = None,
        namespace: str = "default", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels, **meta},
            "spec": {"containers": [{"name": "c", "ports": ports or []}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def service(selector: dict[str, str], ports: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "svc", "namespace": "default"},
            "spec": {"selector": selector, "clusterIP": "127.96.0.10", "ports": ports, **spec}}


def test_listeners_of_a_service() -> None:
    named = [{"name": "grpc", "containerPort": 9002}]
    pods = [pod("a", "127.3.0.1", {"app": "x"}, ports=named),
            pod("b", "127.3.0.2", {"app": "x", "extra": "y"}, ports=[{"name": "grpc", "containerPort": 9100}]),
            pod("c", "127.3.0.3", {"app": "x"}, ready=False, ports=named),
            pod("d", "127.3.0.4", {"app": "other"}, ports=named),
            pod("e", "127.3.0.5", {"app": "x"}, namespace="elsewhere", ports=named),
            pod("f", "127.3.0.6", {"app": "x"}, ports=named, deletionTimestamp="2026-01-01T00:00:00Z"),
            pod("g", "127.3.0.7", {"app": "x"})]  # no port named grpc: not a backend of the named port
    svc = service({"app": "x"}, [{"port": 9002, "targetPort": "grpc"}, {"port": 80, "targetPort": 8000},
                                 {"port": 53, "protocol": "UDP"}], type="LoadBalancer")
    assert listeners_of(svc, pods, "127.0.4.9") == {
        ("127.96.0.10", 9002): [("127.3.0.1", 9002), ("127.3.0.2", 9100)],
        ("127.0.4.9", 9002): [("127.3.0.1", 9002), ("127.3.0.2", 9100)],
        ("127.96.0.10", 80): [("127.3.0.1", 8000), ("127.3.0.2", 8000), ("127.3.0.7", 8000)],
        ("127.0.4.9", 80): [("127.3.0.1", 8000), ("127.3.0.2", 8000), ("127.3.0.7", 8000)],
    }
    publish = service({"app": "x"}, [{"port": 1, "targetPort": 2}], publishNotReadyAddresses=True)
    assert ("127.3.0.3", 2) in listeners_of(publish, pods)[("127.96.0.10", 1)]
    # not proxied: no selector, headless, ExternalName
    assert listeners_of(service({}, [{"port": 1}]), pods) == {}
    assert listeners_of(service({"app": "x"}, [{"port": 1}], clusterIP="None"), pods) == {}
    assert listeners_of(service({"app": "x"}, [{"port": 1}], type="ExternalName", clusterIP=""), pods) == {}


def test_target_port_and_serving_rules() -> None:
    p = pod("a", "127.3.0.1", {}, ports=[{"name": "http", "containerPort": 8000}])
    assert target_port({"port": 80}, p) == 80
    assert target_port({"port": 80, "targetPort": "8080"}, p) == 8080
    assert target_port({"port": 80, "targetPort": "http"}, p) == 8000
    assert target_port({"port": 80, "targetPort": "metrics"}, p) is None
    assert not pod_serving({"metadata": {}, "status": {"phase": "Running"}})  # no IP yet
    assert not pod_serving({**p, "status": {**p["status"], "phase": "Failed"}})
