"""The standard gRPC health service (``grpc.health.v1.Health``) without an extra dependency.

The two messages of ``grpc/health/v1/health.proto`` are built from a descriptor at import
time, so clients (kubelet gRPC probes, Envoy gRPC health checks, ``grpc_health_probe``)
see the real wire format. ``Check`` answers SERVING for every service name while the
readiness callback says so (as upstream's EPP does without leader election), and
``Watch`` streams status changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE_NAME = "grpc.health.v1.Health"
UNKNOWN, SERVING, NOT_SERVING, SERVICE_UNKNOWN = 0, 1, 2, 3


def _build_messages() -> tuple[type[Any], type[Any]]:
    file = descriptor_pb2.FileDescriptorProto(name="infergate/grpc_health_v1.proto", package="grpc.health.v1")
    file.syntax = "proto3"
    request = file.message_type.add(name="HealthCheckRequest")
    request.field.add(name="service", number=1, type=9, label=1)  # string
    response = file.message_type.add(name="HealthCheckResponse")
    enum = response.enum_type.add(name="ServingStatus")
    for name, number in (("UNKNOWN", 0), ("SERVING", 1), ("NOT_SERVING", 2), ("SERVICE_UNKNOWN", 3)):
        enum.value.add(name=name, number=number)
    response.field.add(
        name="status", number=1, type=14, label=1, type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus"
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse")),
    )


HealthCheckRequest, HealthCheckResponse = _build_messages()


class HealthService:
    """``grpc.health.v1.Health``: SERVING iff ``is_ready()``; names in ``known`` or any name if None."""

    def __init__(self, is_ready: Callable[[], bool], *, known: set[str] | None = None,
                 watch_interval: float = 1.0) -> None:
        self._is_ready = is_ready
        self._known = known
        self._watch_interval = watch_interval

    def status(self, service: str) -> int:
        if self._known is not None and service not in self._known:
            return SERVICE_UNKNOWN
        return SERVING if self._is_ready() else NOT_SERVING

    async def check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return HealthCheckResponse(status=self.status(request.service))

    async def watch(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        last = -1
        while True:  # ends when the client cancels the call
            current = self.status(request.service)
            if current != last:
                last = current
                yield HealthCheckResponse(status=current)
            await asyncio.sleep(self._watch_interval)

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Check": grpc.unary_unary_rpc_method_handler(
                    self.check,
                    request_deserializer=HealthCheckRequest.FromString,
                    response_serializer=HealthCheckResponse.SerializeToString,
                ),
                "Watch": grpc.unary_stream_rpc_method_handler(
                    self.watch,
                    request_deserializer=HealthCheckRequest.FromString,
                    response_serializer=HealthCheckResponse.SerializeToString,
                ),
            },
        )


async def check(target: str, service: str = "", timeout: float = 2.0) -> int:
    """Client side: the serving status reported by ``target`` (``host:port``)."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            f"/{SERVICE_NAME}/Check",
            request_serializer=HealthCheckRequest.SerializeToString,
            response_deserializer=HealthCheckResponse.FromString,
        )
        response = await call(HealthCheckRequest(service=service), timeout=timeout)
        return int(response.status)
