"""Readiness probes against a pod IP: HTTP GET, TCP connect, gRPC health (grpc.health.v1)."""

from __future__ import annotations

import asyncio

import aiohttp

from infergate.apiserver.protobuf import encode_varint
from infergate.apiserver.runtime.spec import Probe


def _grpc_health_request(service: str) -> bytes:
    data = service.encode()
    return (b"\x0a" + encode_varint(len(data)) + data) if data else b""


def grpc_serving(response: bytes) -> bool:
    """HealthCheckResponse{status: SERVING (1)}."""
    return response == b"\x08\x01"


async def _http(probe: Probe, host: str, session: aiohttp.ClientSession) -> bool:
    scheme = "https" if probe.scheme.upper() == "HTTPS" else "http"
    path = probe.path if probe.path.startswith("/") else "/" + probe.path
    url = f"{scheme}://{probe.host or host}:{probe.port}{path}"
    timeout = aiohttp.ClientTimeout(total=probe.timeout_s)
    async with session.get(url, headers=dict(probe.headers), timeout=timeout, ssl=False,
                           allow_redirects=False) as response:
        return 200 <= response.status < 400


async def _tcp(probe: Probe, host: str) -> bool:
    # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancel that comes as the connect
    # completes, and the probe loop calling this then outlived its task's cancel
    async with asyncio.timeout(probe.timeout_s):
        _, writer = await asyncio.open_connection(probe.host or host, probe.port)
    writer.close()
    return True


async def _grpc(probe: Probe, host: str) -> bool:
    import grpc

    async with grpc.aio.insecure_channel(f"{host}:{probe.port}") as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        response = await check(_grpc_health_request(probe.service), timeout=probe.timeout_s)
        return grpc_serving(bytes(response))


async def run_probe(probe: Probe, host: str, session: aiohttp.ClientSession) -> bool:
    """One probe attempt: True on success; any error or timeout is a failure."""
    try:
        if probe.kind == "http":
            return await _http(probe, host, session)
        if probe.kind == "tcp":
            return await _tcp(probe, host)
        if probe.kind == "grpc":
            return await _grpc(probe, host)
    except Exception:
        return False
    return False
