"""A scripted ADS client that plays Envoy's side of state-of-the-world xDS (no Envoy): it sends
DiscoveryRequests on one stream (initial requests, ACKs with the latest nonce, NACKs with
``error_detail``) and collects the responses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2


class FakeEnvoy:
    """One ADS stream as node ``node`` (on every request, or only on the first one, as an Envoy
    bootstrapped with ``set_node_on_first_message_only`` sends it)."""

    def __init__(self, address: tuple[str, int], node: base_pb2.Node | None = None, *,
                 node_on_first_only: bool = False) -> None:
        self.channel = grpc.aio.insecure_channel(f"{address[0]}:{address[1]}")
        self.node = node if node is not None else base_pb2.Node(id="fake-envoy")
        self.node_on_first_only = node_on_first_only
        self.first = True
        self.requests: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()
        self.responses: asyncio.Queue[discovery_pb2.DiscoveryResponse] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _requests(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while True:
            yield await self.requests.get()

    async def start(self) -> None:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel).StreamAggregatedResources(self._requests())

        async def read() -> None:
            async for response in call:
                await self.responses.put(response)

        self._task = asyncio.create_task(read())

    def send(self, type_url: str, *, version: str = "", nonce: str = "", names: tuple[str, ...] = (),
             error: str | None = None) -> None:
        request = discovery_pb2.DiscoveryRequest(type_url=type_url, version_info=version, response_nonce=nonce,
                                                 resource_names=list(names))
        if self.first or not self.node_on_first_only:
            request.node.CopyFrom(self.node)
        self.first = False
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self.requests.put_nowait(request)

    async def receive(self, type_url: str, timeout: float = 5.0) -> discovery_pb2.DiscoveryResponse:
        async with asyncio.timeout(timeout):
            while True:
                response = await self.responses.get()
                if response.type_url == type_url:
                    return response

    def ack(self, response: discovery_pb2.DiscoveryResponse, names: tuple[str, ...] = ()) -> None:
        self.send(response.type_url, version=response.version_info, nonce=response.nonce, names=names)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.channel.close()
