"""Body-based routing over real gRPC with real Envoy protobuf messages, and the `infergate bbr` process."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from envoy.config.core.v3 import base_pb2 as core_pb
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from infergate.bbr import BBRServer, BBRServicer
from infergate.epp.extproc import health

MODE = processing_mode_pb2.ProcessingMode
READY = re.compile(r"ready bbr grpc=(?P<grpc>\d+) health=(?P<health>\d+) metrics=(?P<metrics>\d+)")


@pytest.fixture
async def bbr() -> AsyncIterator[tuple[BBRServicer, pb_grpc.ExternalProcessorStub]]:
    servicer = BBRServicer(streaming=False)
    server = BBRServer(servicer, host="127.0.0.1", port=0)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield servicer, pb_grpc.ExternalProcessorStub(channel)
    finally:
        await server.stop(0)


def headers(mode: int | None = None) -> pb.ProcessingRequest:
    request = pb.ProcessingRequest(request_headers=pb.HttpHeaders(headers=core_pb.HeaderMap(headers=[
        core_pb.HeaderValue(key=":path", raw_value=b"/v1/completions"),
    ])))
    if mode is not None:
        request.protocol_config.request_body_mode = mode  # type: ignore[assignment]
    return request


def body(data: bytes, eos: bool = True) -> pb.ProcessingRequest:
    return pb.ProcessingRequest(request_body=pb.HttpBody(body=data, end_of_stream=eos))


def mutation(common: pb.CommonResponse) -> dict[str, str]:
    return {h.header.key: h.header.raw_value.decode() for h in common.header_mutation.set_headers}


async def test_buffered_body_sets_the_model_header(bbr: tuple[BBRServicer, pb_grpc.ExternalProcessorStub]) -> None:
    servicer, stub = bbr
    call = stub.Process()
    await call.write(headers(MODE.BUFFERED))
    assert (await call.read()).WhichOneof("response") == "request_headers"
    await call.write(body(json.dumps({"model": "food-review", "prompt": "hi"}).encode()))
    reply = await call.read()
    common = reply.request_body.response
    assert mutation(common) == {"x-gateway-model-name": "food-review"}
    assert common.clear_route_cache
    assert common.header_mutation.set_headers[0].append_action == core_pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    assert servicer.metrics.success._value.get() == 1


async def test_streaming_mode_defers_headers_and_returns_the_body(
    bbr: tuple[BBRServicer, pb_grpc.ExternalProcessorStub],
) -> None:
    _, stub = bbr
    payload = json.dumps({"model": "m1", "messages": [{"role": "user", "content": "x" * 1000}]}).encode()
    call = stub.Process()
    await call.write(headers(MODE.FULL_DUPLEX_STREAMED))
    await call.write(body(payload[:500], eos=False))
    await call.write(body(payload[500:]))
    first = await call.read()
    assert first.WhichOneof("response") == "request_headers"
    assert mutation(first.request_headers.response) == {"x-gateway-model-name": "m1"}
    second = await call.read()
    streamed = second.request_body.response.body_mutation.streamed_response
    assert streamed.body == payload and streamed.end_of_stream
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK


async def test_missing_model_passes_through_unchanged(
    bbr: tuple[BBRServicer, pb_grpc.ExternalProcessorStub],
) -> None:
    servicer, stub = bbr
    for payload in (b'{"prompt": "p"}', b'{"model": ""}', b'{"model": 7}'):
        call = stub.Process()
        await call.write(headers(MODE.BUFFERED))
        await call.read()
        await call.write(body(payload))
        reply = await call.read()
        assert not reply.request_body.response.header_mutation.set_headers
        assert not reply.request_body.response.clear_route_cache
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
    assert servicer.metrics.model_not_in_body._value.get() == 3


async def test_invalid_json_fails_the_stream(bbr: tuple[BBRServicer, pb_grpc.ExternalProcessorStub]) -> None:
    servicer, stub = bbr
    call = stub.Process()
    await call.write(headers(MODE.BUFFERED))
    await call.read()
    await call.write(body(b"{broken"))
    assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert servicer.metrics.model_not_parsed._value.get() == 1


@pytest.mark.e2e
async def test_bbr_process_serves_health_and_metrics() -> None:
    """Every port 0: the process binds free ones and its ready line names them. (Ports chosen by the
    test could be taken by a parallel test's server while the process starts: the process then
    exited, and the health check met its closing server.)"""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "infergate", "bbr", "-grpc-port", "0", "--grpc-health-port", "0", "-metrics-port=0",
        "--host", "127.0.0.1", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    output: list[str] = []
    try:
        async with asyncio.timeout(20):
            while not (ready := READY.search(output[-1] if output else "")):
                line = await process.stderr.readline()
                assert line, f"bbr exited before it was ready: {''.join(output)}"
                output.append(line.decode())
        grpc_port, health_port, metrics_port = (int(ready[name]) for name in ("grpc", "health", "metrics"))
        assert await health.check(f"127.0.0.1:{health_port}") == health.SERVING
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = pb_grpc.ExternalProcessorStub(channel).Process()
            await call.write(headers(MODE.BUFFERED))
            await call.read()
            await call.write(body(b'{"model": "a"}'))
            reply = await call.read()
            assert mutation(reply.request_body.response) == {"x-gateway-model-name": "a"}
            await call.done_writing()
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        assert "bbr_success_total 1.0" in text
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            async with asyncio.timeout(10):
                rest = await process.stderr.read()
                await process.wait()
        except TimeoutError:
            process.kill()
            rest = b""
            await process.wait()
    assert process.returncode == 0, "".join(output) + rest.decode()
