"""A request that flow control holds: the ext_proc server tells the proxy to wait for it.

Envoy answers 504 when the EPP does not reply to a message within the filter's
``message_timeout``; a request queued by flow control may wait up to the queue's max wait. So
as soon as the Director queues a request, the server sends a ``ProcessingResponse`` carrying
only ``override_message_timeout`` (the max wait plus a margin), then the routing reply once the
request is released. Driven over real gRPC with the EPP's real Director.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from infergate.epp.datastore import Datastore, PodInfo, PoolInfo
from infergate.epp.director import DirectorConfig, EppDirector
from infergate.epp.extproc import ExtProcServer
from infergate.epp.flowcontrol import FlowControlConfig
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.scheduling.config import load_preset

from .test_extproc import BUFFERED, DUPLEX, body_message, completion, headers_message

ENDPOINT = "10.0.0.1:8000"
HOLD_S = 7.5


def director(flow_control: bool) -> tuple[EppDirector, MetricsStore]:
    datastore = Datastore()
    datastore.set_pool(PoolInfo(name="pool", selector=None, target_ports=(8000,)))
    datastore.upsert_pod(PodInfo(name="pod-0", address=ENDPOINT.split(":")[0]))
    store = MetricsStore()
    config = DirectorConfig(flow_control=FlowControlConfig(enabled=flow_control, max_wait=5.0), seed=1)
    return EppDirector(datastore, load_preset("default", seed=1), store, config=config), store


def scrape(store: MetricsStore, queue: int) -> None:
    store.update(ENDPOINT, EndpointMetrics(waiting_queue=queue, kv_cache_usage=0.0, update_time=time.monotonic()))


@pytest.fixture
async def held() -> AsyncIterator[tuple[EppDirector, MetricsStore, pb_grpc.ExternalProcessorStub]]:
    epp, store = director(flow_control=True)
    server = ExtProcServer(epp, host="127.0.0.1", port=0, hold_timeout=HOLD_S)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield epp, store, pb_grpc.ExternalProcessorStub(channel)
    finally:
        await server.stop(0)


async def send_request(stub: pb_grpc.ExternalProcessorStub, prompt: str) -> Any:
    """A buffered-mode exchange up to the body's end of stream (its headers answered)."""
    call = stub.Process()
    await call.write(headers_message({"content-type": "application/json"}, config=BUFFERED))
    assert (await call.read()).HasField("request_headers")
    await call.write(body_message(completion(prompt=prompt)))
    return call


async def test_a_queued_request_first_extends_the_proxys_timeout_then_gets_its_endpoint(
        held: tuple[EppDirector, MetricsStore, pb_grpc.ExternalProcessorStub]) -> None:
    epp, store, stub = held
    scrape(store, queue=9)  # saturated: the request is queued
    call = await send_request(stub, "held")
    notice = await asyncio.wait_for(call.read(), 5)
    assert notice.WhichOneof("response") is None, notice  # nothing but the timeout override
    assert notice.override_message_timeout.ToNanoseconds() == round(HOLD_S * 1e9)
    assert epp.flow.queue_size == 1
    scrape(store, queue=0)  # capacity frees: the request is released and routed
    epp.flow.notify()
    routed = await asyncio.wait_for(call.read(), 5)
    assert routed.HasField("request_body")
    assert {h.header.key: h.header.raw_value.decode()
            for h in routed.request_body.response.header_mutation.set_headers}["x-gateway-destination-endpoint"] == ENDPOINT
    await call.done_writing()


async def test_a_request_admitted_at_once_gets_no_override(
        held: tuple[EppDirector, MetricsStore, pb_grpc.ExternalProcessorStub]) -> None:
    _, store, stub = held
    scrape(store, queue=0)
    call = await send_request(stub, "at once")
    routed = await asyncio.wait_for(call.read(), 5)
    assert routed.HasField("request_body") and not routed.HasField("override_message_timeout")
    await call.done_writing()


async def test_a_held_request_whose_stream_ends_leaves_the_queue(
        held: tuple[EppDirector, MetricsStore, pb_grpc.ExternalProcessorStub]) -> None:
    epp, store, stub = held
    scrape(store, queue=9)
    call = await send_request(stub, "gone")
    await asyncio.wait_for(call.read(), 5)  # the override: it is queued
    assert epp.flow.queue_size == 1
    call.cancel()  # the proxy gave up on it (client gone)
    deadline = time.monotonic() + 5
    while epp.flow.queue_size and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert epp.flow.queue_size == 0


async def test_in_full_duplex_mode_the_override_comes_before_the_deferred_headers_reply(
        held: tuple[EppDirector, MetricsStore, pb_grpc.ExternalProcessorStub]) -> None:
    epp, store, stub = held
    scrape(store, queue=9)
    call = stub.Process()
    await call.write(headers_message({"content-type": "application/json"}, config=DUPLEX))  # answered later
    await call.write(body_message(completion(prompt="duplex, held")))
    notice = await asyncio.wait_for(call.read(), 5)
    assert notice.WhichOneof("response") is None and notice.HasField("override_message_timeout")
    scrape(store, queue=0)
    epp.flow.notify()
    routed = await asyncio.wait_for(call.read(), 5)
    assert routed.HasField("request_headers")  # the routing mutation, then the body
    await call.done_writing()
