"""The ext_proc handler, driven over real gRPC with real Envoy protobuf messages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2 as core_pb
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from google.protobuf import struct_pb2

from infergate.epp.contract import Decision, InferenceRequest
from infergate.epp.datastore import Datastore, Objective, PodInfo, PoolInfo
from infergate.epp.director import DirectorConfig, EppDirector
from infergate.epp.extproc import ExtProcServer, HealthService, health
from infergate.epp.metrics_scraper import MetricsStore
from infergate.epp.scheduling.config import load_preset

MODE = processing_mode_pb2.ProcessingMode
BUFFERED = pb.ProtocolConfiguration(request_body_mode=MODE.BUFFERED, response_body_mode=MODE.NONE)
DUPLEX = pb.ProtocolConfiguration(
    request_body_mode=MODE.FULL_DUPLEX_STREAMED, response_body_mode=MODE.FULL_DUPLEX_STREAMED
)


ENDPOINTS = ["10.0.0.1:8000", "10.0.0.2:8000"]


def real_director(*, synced: bool = True) -> EppDirector:
    """The EPP's real Director over a datastore with two pods and two objectives (no metrics yet)."""
    datastore = Datastore()
    if synced:
        datastore.set_pool(PoolInfo(name="pool", selector=None, target_ports=(8000,)))
        for i, endpoint in enumerate(ENDPOINTS):
            datastore.upsert_pod(PodInfo(name=f"pod-{i}", address=endpoint.split(":")[0]))
        datastore.upsert_objective(Objective(name="critical", priority=2))
        datastore.upsert_objective(Objective(name="sheddable", priority=-1))
    return EppDirector(datastore, load_preset("default", seed=3), MetricsStore(), config=DirectorConfig(seed=3))


@dataclass
class RecordingDirector:
    """Delegates to the real Director and records what the ext_proc server called."""

    real: EppDirector = field(default_factory=real_director)
    endpoints: list[str] = field(default_factory=lambda: list(ENDPOINTS))
    requests: list[InferenceRequest] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    response_headers: list[tuple[str, int]] = field(default_factory=list)
    response_chunks: list[tuple[str, bytes, bool]] = field(default_factory=list)
    done: list[tuple[str, bool]] = field(default_factory=list)
    done_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_done(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for the server's first on_request_done: a cancelled stream reaches it
        asynchronously, later on a loaded machine than any fixed sleep allows."""
        await asyncio.wait_for(self.done_event.wait(), timeout)

    async def handle_request(self, request: InferenceRequest) -> Decision:
        self.requests.append(request)
        decision = await self.real.handle_request(request)
        self.decisions.append(decision)
        return decision

    def on_response_headers(self, request_id: str, status: int, headers: Mapping[str, str]) -> None:
        self.response_headers.append((request_id, status))
        self.real.on_response_headers(request_id, status, headers)

    def on_response_body(self, request_id: str, chunk: bytes, end_of_stream: bool) -> None:
        self.response_chunks.append((request_id, chunk, end_of_stream))
        self.real.on_response_body(request_id, chunk, end_of_stream)

    def on_request_done(self, request_id: str, *, completed: bool) -> None:
        self.done.append((request_id, completed))
        self.done_event.set()
        self.real.on_request_done(request_id, completed=completed)


@pytest.fixture
async def director() -> RecordingDirector:
    return RecordingDirector()


@pytest.fixture
async def server(director: RecordingDirector) -> AsyncIterator[ExtProcServer]:
    srv = ExtProcServer(director, host="127.0.0.1", port=0, health=HealthService(lambda: True))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(0)


@pytest.fixture
async def stub(server: ExtProcServer) -> AsyncIterator[pb_grpc.ExternalProcessorStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.ExternalProcessorStub(channel)


def headers_message(
    headers: dict[str, str], *, config: pb.ProtocolConfiguration | None, eos: bool = False,
    metadata: dict[str, Any] | None = None,
) -> pb.ProcessingRequest:
    all_headers = {":method": "POST", ":path": "/v1/completions", ":authority": "gw", **headers}
    request = pb.ProcessingRequest(
        request_headers=pb.HttpHeaders(
            headers=core_pb.HeaderMap(
                headers=[core_pb.HeaderValue(key=k, raw_value=v.encode()) for k, v in all_headers.items()]
            ),
            end_of_stream=eos,
        )
    )
    if config is not None:
        request.protocol_config.CopyFrom(config)
    if metadata is not None:
        for namespace, values in metadata.items():
            struct = struct_pb2.Struct()
            struct.update(values)
            request.metadata_context.filter_metadata[namespace].CopyFrom(struct)
    return request


def body_message(body: bytes, *, eos: bool = True) -> pb.ProcessingRequest:
    return pb.ProcessingRequest(request_body=pb.HttpBody(body=body, end_of_stream=eos))


def set_headers(common: pb.CommonResponse) -> dict[str, str]:
    return {h.header.key: h.header.raw_value.decode() for h in common.header_mutation.set_headers}


def completion(model: str = "m", prompt: str = "hello", **extra: Any) -> bytes:
    return json.dumps({"model": model, "prompt": prompt, **extra}).encode()


async def test_buffered_mode_routes_in_the_body_response(
    stub: pb_grpc.ExternalProcessorStub, director: RecordingDirector
) -> None:
    call = stub.Process()
    await call.write(headers_message(
        {"x-request-id": "r1", "x-gateway-inference-objective": "critical"}, config=BUFFERED
    ))
    first = await call.read()
    assert first.WhichOneof("response") == "request_headers"
    assert not first.request_headers.response.header_mutation.set_headers  # nothing to say yet
    body = completion(prompt="tell me", stream=True)
    await call.write(body_message(body[:10], eos=False))
    partial = await call.read()
    assert partial.WhichOneof("response") == "request_body"
    await call.write(body_message(body[10:]))
    routed = await call.read()
    common = routed.request_body.response
    headers = set_headers(common)
    chosen = headers["x-gateway-destination-endpoint"]
    decision = director.decisions[0]
    assert chosen == ",".join([decision.endpoint, *decision.fallbacks]) and decision.endpoint in director.endpoints
    assert common.clear_route_cache
    assert "content-length" not in headers  # body untouched
    assert not common.HasField("body_mutation")
    lb = routed.dynamic_metadata.fields["envoy.lb"].struct_value
    assert lb.fields["x-gateway-destination-endpoint"].string_value == chosen
    option = common.header_mutation.set_headers[0]
    assert option.append_action == core_pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD

    (request,) = director.requests
    assert (request.request_id, request.model, request.prompt) == ("r1", "m", "tell me")
    assert request.objective == "critical" and request.streaming and request.subset_hint is None
    assert request.headers[":path"] == "/v1/completions"

    await call.write(pb.ProcessingRequest(response_headers=pb.HttpHeaders(
        headers=core_pb.HeaderMap(headers=[core_pb.HeaderValue(key=":status", raw_value=b"200")])
    )))
    reply = await call.read()
    assert reply.WhichOneof("response") == "response_headers"
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK
    assert director.response_headers == [("r1", 200)]
    assert director.done == [("r1", True)]


async def test_full_duplex_mode_defers_headers_and_resends_the_body_in_chunks(
    stub: pb_grpc.ExternalProcessorStub, director: RecordingDirector
) -> None:
    prompt = "x" * 150_000
    body = completion(model="base", prompt=prompt)
    call = stub.Process()
    await call.write(headers_message({"x-gateway-model-name-rewrite": "adapter-1"}, config=DUPLEX))
    for start in range(0, len(body), 50_000):
        piece = body[start : start + 50_000]
        await call.write(body_message(piece, eos=start + 50_000 >= len(body)))
    first = await call.read()
    assert first.WhichOneof("response") == "request_headers"  # deferred until the body ended
    headers = set_headers(first.request_headers.response)
    assert first.request_headers.response.clear_route_cache
    request_id = headers["x-request-id"]  # generated: none was sent
    assert director.requests[0].request_id == request_id and director.requests[0].model == "adapter-1"
    chunks: list[pb.StreamedBodyResponse] = []
    for _ in range(10):
        message = await call.read()
        streamed = message.request_body.response.body_mutation.streamed_response
        chunks.append(streamed)
        if streamed.end_of_stream:
            break
    assert all(len(c.body) <= 62_000 for c in chunks) and len(chunks) == 3
    assert [c.end_of_stream for c in chunks] == [False, False, True]
    sent = b"".join(c.body for c in chunks)
    assert json.loads(sent) == {"model": "adapter-1", "prompt": prompt}
    assert headers["content-length"] == str(len(sent))
    # the response side in FULL_DUPLEX_STREAMED is echoed chunk by chunk
    await call.write(pb.ProcessingRequest(response_body=pb.HttpBody(body=b"data: 1\n\n", end_of_stream=False)))
    echo = await call.read()
    assert echo.response_body.response.body_mutation.streamed_response.body == b"data: 1\n\n"
    await call.write(pb.ProcessingRequest(response_body=pb.HttpBody(body=b"data: [DONE]\n\n", end_of_stream=True)))
    echo = await call.read()
    assert echo.response_body.response.body_mutation.streamed_response.end_of_stream
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    assert [eos for _, _, eos in director.response_chunks] == [False, True]
    assert director.done == [(request_id, True)]


async def test_protocol_config_absent_means_upstreams_full_duplex(
    stub: pb_grpc.ExternalProcessorStub, director: RecordingDirector
) -> None:
    call = stub.Process()
    await call.write(headers_message({"x-request-id": "r2"}, config=None))
    await call.write(body_message(b""  + completion()))
    first = await call.read()
    assert first.WhichOneof("response") == "request_headers"
    assert "x-gateway-destination-endpoint" in set_headers(first.request_headers.response)
    chunk = await call.read()
    assert chunk.request_body.response.body_mutation.streamed_response.body == completion()
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK


async def test_chat_messages_become_upstreams_prompt_template(
    stub: pb_grpc.ExternalProcessorStub, director: RecordingDirector
) -> None:
    body = json.dumps({"model": "m", "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
        {"role": "user", "content": [{"type": "text", "text": "skipped"}]},
    ]}).encode()
    call = stub.Process()
    await call.write(headers_message({}, config=BUFFERED))
    await call.read()
    await call.write(body_message(body))
    await call.read()
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    assert director.requests[0].prompt == "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "Error unmarshaling request body"),
        (b"[1, 2]", "Error unmarshaling request body"),
        (json.dumps({"prompt": "p"}).encode(), "model not found in request body"),
        (json.dumps({"model": 3, "prompt": "p"}).encode(), "model not found in request body"),
        (json.dumps({"model": "m"}).encode(), "prompt not found in request body"),
        (json.dumps({"model": "m", "messages": []}).encode(), "messages must be a non-empty list"),
    ],
)
async def test_bad_bodies_get_400_without_scheduling(
    stub: pb_grpc.ExternalProcessorStub, director: RecordingDirector, body: bytes, message: str
) -> None:
    call = stub.Process()
    await call.write(headers_message({"x-request-id": "bad"}, config=BUFFERED))
    await call.read()
    await call.write(body_message(body))
    reply = await call.read()
    assert reply.immediate_response.status.code == 400
    error = json.loads(reply.immediate_response.body)["error"]
    assert error["type"] == "BadRequest" and error["code"] == 400
    assert error["message"].startswith(f"inference gateway: BadRequest - {message}")
    assert await call.read() == grpc.aio.EOF  # the stream ends after an immediate response
    assert director.requests == [] and director.done == []


async def test_rejection_is_an_immediate_response_and_still_released(
    stub: pb_grpc.ExternalProcessorStub, director: RecordingDirector
) -> None:
    call = stub.Process()
    await call.write(headers_message({"x-request-id": "s1", "x-gateway-inference-objective": "sheddable"},
                                     config=BUFFERED))
    await call.read()
    await call.write(body_message(completion()))
    reply = await call.read()
    immediate = reply.immediate_response
    assert immediate.status.code == 429
    assert json.loads(immediate.body)["error"]["message"] == (
        "inference gateway: InferencePoolResourceExhausted - system saturated, sheddable request dropped"
    )
    assert {h.header.key: h.header.raw_value for h in immediate.headers.set_headers} == {
        "content-type": b"application/json"
    }
    assert await call.code() == grpc.StatusCode.OK
    assert director.done == [("s1", False)]


async def test_text_error_bodies_match_upstream(director: RecordingDirector) -> None:
    srv = ExtProcServer(director, host="127.0.0.1", port=0, json_errors=False)
    await srv.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
            call = pb_grpc.ExternalProcessorStub(channel).Process()
            await call.write(headers_message({"x-gateway-inference-objective": "sheddable"}, config=BUFFERED))
            await call.read()
            await call.write(body_message(completion()))
            reply = await call.read()
    finally:
        await srv.stop(0)
    assert reply.immediate_response.body == (
        b"inference gateway: InferencePoolResourceExhausted - system saturated, sheddable request dropped"
    )


async def test_subset_hint_from_filter_metadata(
    stub: pb_grpc.ExternalProcessorStub, director: RecordingDirector
) -> None:
    hint = {"envoy.lb.subset_hint": {"x-gateway-destination-endpoint-subset": ["10.0.0.2:8000"]}}
    call = stub.Process()
    await call.write(headers_message({}, config=BUFFERED, metadata=hint))
    await call.read()
    await call.write(body_message(completion()))
    reply = await call.read()
    assert set_headers(reply.request_body.response)["x-gateway-destination-endpoint"] == "10.0.0.2:8000"
    assert director.requests[0].subset_hint == ["10.0.0.2:8000"]
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK

    empty = {"envoy.lb.subset_hint": {"x-gateway-destination-endpoint-subset": []}}
    call = stub.Process()
    await call.write(headers_message({}, config=BUFFERED, metadata=empty))
    await call.read()
    await call.write(body_message(completion()))
    reply = await call.read()
    assert reply.immediate_response.status.code == 503
    assert director.requests[1].subset_hint == []


async def test_model_rewrite_in_buffered_mode_fixes_content_length(
    stub: pb_grpc.ExternalProcessorStub, director: RecordingDirector
) -> None:
    call = stub.Process()
    await call.write(headers_message({"x-gateway-model-name-rewrite": "lora-b"}, config=BUFFERED))
    await call.read()
    await call.write(body_message(completion(model="base", prompt="é")))
    reply = await call.read()
    common = reply.request_body.response
    new_body = common.body_mutation.body
    assert json.loads(new_body) == {"model": "lora-b", "prompt": "é"}
    assert set_headers(common)["content-length"] == str(len(new_body))
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK


async def test_headers_only_request_is_routed_from_the_headers(
    stub: pb_grpc.ExternalProcessorStub, director: RecordingDirector
) -> None:
    call = stub.Process()
    await call.write(headers_message({"x-request-id": "g1"}, config=BUFFERED, eos=True))
    reply = await call.read()
    headers = set_headers(reply.request_headers.response)
    assert headers["x-gateway-destination-endpoint"].split(",")[0] in director.endpoints
    assert director.requests[0].headers_only and director.requests[0].body == {}
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    assert director.done == [("g1", False)]  # no response was seen: not a completed request


async def test_broken_stream_releases_the_request_exactly_once(
    stub: pb_grpc.ExternalProcessorStub, director: RecordingDirector
) -> None:
    call = stub.Process()
    await call.write(headers_message({"x-request-id": "c1"}, config=BUFFERED))
    await call.read()
    await call.write(body_message(completion()))
    await call.read()
    call.cancel()  # Envoy resets the stream when the client goes away
    await director.wait_done()
    await asyncio.sleep(0.2)  # a second release would follow the first one closely
    assert director.done == [("c1", False)]


async def test_health_service_reports_readiness(server: ExtProcServer) -> None:
    assert await health.check(f"127.0.0.1:{server.port}", "envoy.service.ext_proc.v3.ExternalProcessor") == (
        health.SERVING
    )
    ready = {"now": False}
    service = HealthService(lambda: ready["now"], known={"", "inference-extension"})
    hs = __import__("infergate.epp.extproc", fromlist=["HealthServer"]).HealthServer(
        service, host="127.0.0.1", port=0
    )
    await hs.start()
    try:
        target = f"127.0.0.1:{hs.port}"
        assert await health.check(target, "inference-extension") == health.NOT_SERVING
        ready["now"] = True
        assert await health.check(target) == health.SERVING
        assert await health.check(target, "other") == health.SERVICE_UNKNOWN
    finally:
        await hs.stop(0)


async def test_health_watch_streams_readiness_changes() -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    ready = {"now": False}
    service = HealthService(lambda: ready["now"], watch_interval=0.02)
    hs = __import__("infergate.epp.extproc", fromlist=["HealthServer"]).HealthServer(
        service, host="127.0.0.1", port=0
    )
    await hs.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{hs.port}") as channel:
            call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="inference-extension"))
            assert (await call.read()).status == health.NOT_SERVING
            ready["now"] = True
            assert (await asyncio.wait_for(call.read(), 5)).status == health.SERVING
            call.cancel()
    finally:
        await hs.stop(0)


async def test_pool_not_ready_fails_the_stream_for_the_proxys_failure_mode() -> None:
    broken = RecordingDirector(real=real_director(synced=False))  # PoolNotReady
    srv = ExtProcServer(broken, host="127.0.0.1", port=0)
    await srv.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
            call = pb_grpc.ExternalProcessorStub(channel).Process()
            await call.write(headers_message({"x-request-id": "u1"}, config=BUFFERED))
            await call.read()
            await call.write(body_message(completion()))
            assert await call.code() == grpc.StatusCode.UNKNOWN
            assert "not synced" in await call.details()
    finally:
        await srv.stop(0)
    assert broken.done == [("u1", False)]


async def test_reset_after_response_headers_counts_as_completed_when_the_body_is_not_followed(
    stub: pb_grpc.ExternalProcessorStub, director: RecordingDirector
) -> None:
    # Envoy resets the ext_proc stream when the HTTP stream is destroyed, even after success;
    # with response body mode NONE the response headers are the last signal there is.
    call = stub.Process()
    await call.write(headers_message({"x-request-id": "n1"}, config=BUFFERED))
    await call.read()
    await call.write(body_message(completion()))
    await call.read()
    assert director.real.inflight(director.decisions[0].endpoint) == 1
    await call.write(pb.ProcessingRequest(response_headers=pb.HttpHeaders(
        headers=core_pb.HeaderMap(headers=[core_pb.HeaderValue(key=":status", raw_value=b"200")])
    )))
    await call.read()
    call.cancel()
    await director.wait_done()
    assert director.done == [("n1", True)]
    assert director.real.inflight(director.decisions[0].endpoint) == 0


async def test_duplex_request_ending_with_trailers_is_routed_at_the_trailers(
    stub: pb_grpc.ExternalProcessorStub, director: RecordingDirector
) -> None:
    call = stub.Process()
    await call.write(headers_message({"x-request-id": "t1"}, config=DUPLEX))
    await call.write(body_message(completion(), eos=False))
    await call.write(pb.ProcessingRequest(request_trailers=pb.HttpTrailers()))
    first = await call.read()
    assert "x-gateway-destination-endpoint" in set_headers(first.request_headers.response)
    chunk = (await call.read()).request_body.response.body_mutation.streamed_response
    assert chunk.body == completion() and not chunk.end_of_stream  # the trailers end the request
    assert (await call.read()).WhichOneof("response") == "request_trailers"
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    assert director.done == [("t1", False)]  # no response was seen: not a completed request


def request_sizes(director: RecordingDirector, model: str) -> tuple[float, float]:
    """(count, sum) of inference_model_request_sizes for model -> model."""
    labels = {"model_name": model, "target_model_name": model}
    registry = director.real.metrics.registry
    count = registry.get_sample_value("inference_model_request_sizes_count", labels)
    total = registry.get_sample_value("inference_model_request_sizes_sum", labels)
    return (count or 0.0, total or 0.0)


async def test_request_sizes_histogram_records_the_received_body_size(
    stub: pb_grpc.ExternalProcessorStub, director: RecordingDirector
) -> None:
    assert request_sizes(director, "sized") == (0.0, 0.0)
    buffered = completion(model="sized", prompt="x" * 300)
    call = stub.Process()
    await call.write(headers_message({"x-request-id": "s1"}, config=BUFFERED))
    await call.read()
    await call.write(body_message(buffered))
    await call.read()
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    assert request_sizes(director, "sized") == (1.0, float(len(buffered)))

    # full duplex: the body arrives in two chunks; the size is the whole buffered body
    streamed = completion(model="sized", prompt="y" * 5000, stream=True)
    call = stub.Process()
    await call.write(headers_message({"x-request-id": "s2"}, config=DUPLEX))
    await call.write(body_message(streamed[:100], eos=False))
    await call.write(body_message(streamed[100:], eos=True))
    await call.read()
    await call.done_writing()
    for _ in range(20):  # the re-sent body chunks, then the end of the stream
        if await call.read() == grpc.aio.EOF:
            break
    assert await call.code() == grpc.StatusCode.OK
    assert director.requests[-1].body_size == len(streamed)
    assert request_sizes(director, "sized") == (2.0, float(len(buffered) + len(streamed)))

    # a body without a model is rejected before scheduling: not a counted request
    call = stub.Process()
    await call.write(headers_message({"x-request-id": "s3"}, config=BUFFERED))
    await call.read()
    await call.write(body_message(b'{"prompt": "no model"}'))
    assert (await call.read()).WhichOneof("response") == "immediate_response"
    assert request_sizes(director, "sized") == (2.0, float(len(buffered) + len(streamed)))


async def test_2000_deep_body_gets_an_openai_style_400_from_the_epp(
    stub: pb_grpc.ExternalProcessorStub, director: RecordingDirector
) -> None:
    call = stub.Process()
    await call.write(headers_message({"x-request-id": "deep"}, config=BUFFERED))
    await call.read()
    await call.write(body_message(b'{"model":"m","prompt":"p","x":' + b"[" * 2_000 + b"]" * 2_000 + b"}"))
    reply = await call.read()
    assert reply.immediate_response.status.code == 400
    error = json.loads(reply.immediate_response.body)["error"]
    assert error["type"] == "BadRequest" and error["code"] == 400
    assert "nested deeper than" in error["message"]
    assert await call.read() == grpc.aio.EOF
    assert director.requests == []
