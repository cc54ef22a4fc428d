"""Destination Endpoint Served on the EPP side: the ``envoy.lb`` /
``x-gateway-destination-endpoint-served`` metadata the gateway sends with response headers,
and upstream's conformance plugin ``destination-endpoint-served-verifier`` echoing it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from envoy.config.core.v3 import base_pb2 as core_pb
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import struct_pb2

from infergate.api import headers
from infergate.epp.extproc import messages
from infergate.epp.extproc.servicer import ExtProcServicer
from infergate.epp.scheduling.config import load_config_text
from infergate.epp.scheduling.plugins.served_endpoint import MISSING

from .test_extproc import real_director

VERIFIER = """apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: random-picker
- type: destination-endpoint-served-verifier
"""


def _response_headers(served: str | None) -> pb.ProcessingRequest:
    request = pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=core_pb.HeaderMap(headers=[
        core_pb.HeaderValue(key=":status", raw_value=b"200")])))
    if served is not None:
        lb = struct_pb2.Struct()
        lb.update({headers.DESTINATION_ENDPOINT_SERVED: served})
        request.metadata_context.filter_metadata[headers.LB_METADATA_NAMESPACE].CopyFrom(lb)
    return request


def test_served_endpoint_is_read_from_the_lb_metadata() -> None:
    assert messages.served_endpoint(_response_headers("10.0.0.2:8000")) == "10.0.0.2:8000"
    assert messages.served_endpoint(_response_headers(None)) is None
    other = pb.ProcessingRequest()
    other.metadata_context.filter_metadata["envoy.lb"].update({"x-gateway-destination-endpoint": "10.0.0.1:8000"})
    assert messages.served_endpoint(other) is None


def test_the_verifier_plugin_reports_it_and_says_when_it_is_missing() -> None:
    scheduler = load_config_text(VERIFIER)
    assert scheduler.response_headers("10.0.0.2:8000") == {headers.CONFORMANCE_TEST_SERVED_ENDPOINT: "10.0.0.2:8000"}
    assert scheduler.response_headers(None) == {headers.CONFORMANCE_TEST_SERVED_ENDPOINT: MISSING}
    assert load_config_text(VERIFIER.replace("- type: destination-endpoint-served-verifier\n", "")).response_headers(
        "10.0.0.2:8000") == {}


async def _replies(servicer: ExtProcServicer, served: str | None) -> list[pb.ProcessingResponse]:
    async def stream() -> AsyncIterator[pb.ProcessingRequest]:
        yield _response_headers(served)

    return [r async for r in servicer.Process(stream(), None)]


def _set_headers(reply: pb.ProcessingResponse) -> dict[str, str]:
    mutation = reply.response_headers.response.header_mutation
    return {h.header.key: h.header.raw_value.decode() for h in mutation.set_headers}


async def test_the_servicer_adds_the_plugins_headers_to_the_response() -> None:
    scheduler = load_config_text(VERIFIER)
    with_hook = ExtProcServicer(real_director(), response_headers=scheduler.response_headers)
    (reply,) = await _replies(with_hook, "10.0.0.1:8000")
    assert _set_headers(reply)[headers.CONFORMANCE_TEST_SERVED_ENDPOINT] == "10.0.0.1:8000"
    (reply,) = await _replies(ExtProcServicer(real_director()), "10.0.0.1:8000")
    assert headers.CONFORMANCE_TEST_SERVED_ENDPOINT not in _set_headers(reply)  # off unless configured
