"""Body-based routing (BBR): an ext_proc server that copies the body's ``model`` into a header.

As upstream's BBR (v1.0 ``pkg/bbr``): placed before routing, it parses the request JSON and,
if ``model`` is a non-empty string, sets request header ``x-gateway-model-name: <model>``
with ``clear_route_cache`` so that HTTPRoute header matches select the pool.

* Buffered request body (non-streaming): the headers are answered at once; the body reply
  carries the header mutation.
* ``FULL_DUPLEX_STREAMED`` (``--streaming``, or announced by ``protocol_config``): the headers
  reply is deferred until the body's end of stream, then sent with the mutation, followed
  by the whole body as one streamed chunk with end of stream.
* Missing model: the same flow without the mutation. Invalid JSON: the stream fails with
  gRPC ``INVALID_ARGUMENT`` (the proxy applies its failure mode), as upstream returns an error.
* Response headers and body get empty (pass-through) replies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2 as core_pb
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from prometheus_client import CollectorRegistry, Counter

from infergate.api import headers as gie
from infergate.api.limits import EXT_PROC_MAX_MESSAGE_BYTES
from infergate.util.grpc_server import GrpcServer

log = logging.getLogger(__name__)

_FULL_DUPLEX = processing_mode_pb2.ProcessingMode.FULL_DUPLEX_STREAMED


class BBRMetrics:
    """Upstream's BBR counters, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.success = Counter("bbr_success", "Requests whose model was copied into the header.",
                               registry=self.registry)
        self.model_not_in_body = Counter("bbr_model_not_in_body", "Requests without a model in the body.",
                                         registry=self.registry)
        self.model_not_parsed = Counter("bbr_model_not_parsed", "Requests whose body could not be parsed.",
                                        registry=self.registry)


def model_of(body: bytes) -> str | None:
    """The body's ``model`` if it is a non-empty string; ``ValueError`` if the body is not JSON."""
    parsed = json.loads(body)
    model = parsed.get("model") if isinstance(parsed, dict) else None
    return model if isinstance(model, str) and model else None


def _mutation(model: str | None) -> pb.CommonResponse:
    if model is None:
        return pb.CommonResponse()
    option = core_pb.HeaderValueOption(
        header=core_pb.HeaderValue(key=gie.MODEL_NAME, raw_value=model.encode()),
        append_action=core_pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )
    return pb.CommonResponse(header_mutation=pb.HeaderMutation(set_headers=[option]), clear_route_cache=True)


class BBRServicer(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, *, streaming: bool = False, metrics: BBRMetrics | None = None) -> None:
        self._streaming = streaming
        self.metrics = metrics or BBRMetrics()

    async def Process(  # gRPC method name
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ProcessingResponse]:
        streaming = self._streaming
        body = bytearray()
        async for request in request_iterator:
            kind = request.WhichOneof("request")
            if kind == "request_headers":
                if request.HasField("protocol_config"):
                    streaming = request.protocol_config.request_body_mode == _FULL_DUPLEX
                if request.request_headers.end_of_stream or not streaming:
                    yield pb.ProcessingResponse(request_headers=pb.HeadersResponse())
            elif kind == "request_body":
                body += request.request_body.body
                if not request.request_body.end_of_stream:
                    if not streaming:
                        yield pb.ProcessingResponse(request_body=pb.BodyResponse())
                    continue
                try:
                    model = model_of(bytes(body))
                except ValueError as exc:
                    self.metrics.model_not_parsed.inc()
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"error unmarshaling request body: {exc}")
                if model is None:
                    self.metrics.model_not_in_body.inc()
                else:
                    self.metrics.success.inc()
                if streaming:
                    yield pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=_mutation(model)))
                    yield pb.ProcessingResponse(request_body=pb.BodyResponse(response=pb.CommonResponse(
                        body_mutation=pb.BodyMutation(
                            streamed_response=pb.StreamedBodyResponse(body=bytes(body), end_of_stream=True)
                        )
                    )))
                else:
                    yield pb.ProcessingResponse(request_body=pb.BodyResponse(response=_mutation(model)))
                body = bytearray()
            elif kind == "request_trailers":
                yield pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
            elif kind == "response_headers":
                yield pb.ProcessingResponse(response_headers=pb.HeadersResponse())
            elif kind == "response_body":
                yield pb.ProcessingResponse(response_body=pb.BodyResponse())
            elif kind == "response_trailers":
                yield pb.ProcessingResponse(response_trailers=pb.TrailersResponse())


class BBRServer(GrpcServer):
    """grpc.aio server for the BBR servicer; ``port=0`` binds a free port."""

    def __init__(self, servicer: BBRServicer, *, host: str = "0.0.0.0", port: int = 9004,
                 credentials: grpc.ServerCredentials | None = None,
                 extra_handlers: tuple[grpc.GenericRpcHandler, ...] = ()) -> None:
        super().__init__(host=host, port=port, credentials=credentials,
                         options=[("grpc.max_concurrent_streams", 100_000), ("grpc.so_reuseport", 0),
                                  ("grpc.max_receive_message_length", EXT_PROC_MAX_MESSAGE_BYTES)])
        self.servicer = servicer
        self._extra = extra_handlers

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_ExternalProcessorServicer_to_server(self.servicer, server)
        if self._extra:
            server.add_generic_rpc_handlers(self._extra)
