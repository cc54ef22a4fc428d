"""The standard gRPC health service (``grpc.health.v1.Health``) of the EPP and BBR.

Built on ``grpcio-health-checking`` (its messages, stub and asyncio servicer), so clients
(kubelet gRPC probes, Envoy gRPC health checks, ``grpc_health_probe``) see the reference
implementation's wire format. What differs from that servicer's table of statuses is where a
status comes from: ``Check`` answers SERVING for every service name (or only the ``known``
ones; others are SERVICE_UNKNOWN) while the readiness callback says so, as upstream's EPP does
without leader election, and ``Watch`` streams the changes of that callback. The ``live``
names (the EPP protocol's ``liveness``) answer SERVING whenever the process answers at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE_NAME: str = health.SERVICE_NAME  # "grpc.health.v1.Health"
UNKNOWN: int = health_pb2.HealthCheckResponse.UNKNOWN
SERVING: int = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: int = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN: int = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

HealthCheckRequest = health_pb2.HealthCheckRequest
HealthCheckResponse = health_pb2.HealthCheckResponse


class HealthService(health.aio.HealthServicer):  # type: ignore[misc]
    """``grpc.health.v1.Health``: SERVING iff ``is_ready()`` for the names in ``known`` (any name
    if None); always SERVING for the ``live`` names; SERVICE_UNKNOWN for the others."""

    def __init__(self, is_ready: Callable[[], bool], *, known: Iterable[str] | None = None,
                 live: Iterable[str] = (), watch_interval: float = 1.0) -> None:
        super().__init__()
        self._is_ready = is_ready
        self._known = None if known is None else frozenset(known)
        self._live = frozenset(live)
        self._watch_interval = watch_interval

    def status(self, service: str) -> int:
        if service in self._live:
            return SERVING
        if self._known is not None and service not in self._known:
            return SERVICE_UNKNOWN
        return SERVING if self._is_ready() else NOT_SERVING

    async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:  # gRPC method name
        return HealthCheckResponse(status=self.status(request.service))

    async def Watch(  # gRPC method name
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        last = -1
        while True:  # ends when the client cancels the call
            current = self.status(request.service)
            if current != last:
                last = current
                yield HealthCheckResponse(status=current)
            await asyncio.sleep(self._watch_interval)

    def handler(self) -> grpc.GenericRpcHandler:
        """This service as a generic handler, for servers that take a list of handlers."""
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Check": grpc.unary_unary_rpc_method_handler(
                    self.Check,
                    request_deserializer=HealthCheckRequest.FromString,
                    response_serializer=HealthCheckResponse.SerializeToString,
                ),
                "Watch": grpc.unary_stream_rpc_method_handler(
                    self.Watch,
                    request_deserializer=HealthCheckRequest.FromString,
                    response_serializer=HealthCheckResponse.SerializeToString,
                ),
            },
        )


async def check(target: str, service: str = "", timeout: float = 2.0) -> int:
    """Client side: the serving status reported by ``target`` (``host:port``)."""
    async with grpc.aio.insecure_channel(target) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(HealthCheckRequest(service=service),
                                                                  timeout=timeout)
        return int(response.status)
