"""Test doubles for data-plane tests (used by infergate's own suites, not at runtime).

``EchoServers`` answers on several loopback addresses (like pods) and says which address
served, which EPP picked it and what routing headers arrived. ``StampingEpp`` is a minimal
ext_proc servicer (the real one is ``infergate epp``): it picks round robin among its pool's
endpoints and stamps its name into the request (``x-epp-name``), so a test can tell which
pool's picker served each request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc
from aiohttp import web
from envoy.config.core.v3 import base_pb2 as core
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from google.protobuf import struct_pb2

from infergate.api import headers
from infergate.ir import Endpoint
from infergate.util.net import free_port, random_loopback_block

DEST = headers.DESTINATION_ENDPOINT


class LoopbackServers:
    """One aiohttp app on ``count`` loopback addresses sharing ``port`` (a free one by default),
    the way pods share a port on their own IPs; subclasses answer in ``_handle``."""

    def __init__(self, count: int, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.addresses = random_loopback_block(count, self.port)
        self._runner: web.AppRunner | None = None

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(Endpoint(a, self.port) for a in self.addresses)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        for address in self.addresses:
            await web.TCPSite(self._runner, address, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class EchoServers(LoopbackServers):
    """Echoes which server, path, EPP and destination a request reached; streams SSE chunks on request."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.served: Counter[str] = Counter()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        server = f"{sock[0]}:{sock[1]}" if sock else "?"
        self.served[server] += 1
        body = await request.read()
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = {}
        info = {
            "server": server,
            "path": request.path,
            "epp": request.headers.get("x-epp-name", ""),
            "destination": request.headers.get(DEST, ""),
            "model_header": request.headers.get("x-gateway-model-name", ""),
        }
        chunks = int(payload.get("chunks", 0)) if isinstance(payload, dict) else 0
        if not chunks:
            return web.json_response(info)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        delay = float(payload.get("chunk_delay", 0.05))
        for index in range(chunks):
            await response.write(f"data: {json.dumps({**info, 'chunk': index})}\n\n".encode())
            await asyncio.sleep(delay)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


class StampingEpp(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    """Picks round robin among ``endpoints``; stamps ``x-epp-name: <name>`` on what it routes."""

    def __init__(self, name: str, endpoints: tuple[Endpoint, ...]) -> None:
        self.name = name
        self.endpoints = [f"{e.address}:{e.port}" for e in endpoints]
        self.port = free_port()
        self.picked = 0
        self._next = 0
        self._server: grpc.aio.Server | None = None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port)

    def _mutation(self) -> tuple[pb.CommonResponse, str]:
        target = self.endpoints[self._next % len(self.endpoints)]
        self._next += 1
        self.picked += 1
        mutations = [
            core.HeaderValueOption(
                header=core.HeaderValue(key=DEST, raw_value=target.encode()),
                append_action=core.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
            ),
            core.HeaderValueOption(
                header=core.HeaderValue(key="x-epp-name", raw_value=self.name.encode()),
                append_action=core.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
            ),
        ]
        return pb.CommonResponse(header_mutation=pb.HeaderMutation(set_headers=mutations)), target

    def _metadata(self, target: str) -> struct_pb2.Struct:
        md = struct_pb2.Struct()
        md.update({headers.LB_METADATA_NAMESPACE: {DEST: target}})
        return md

    async def Process(self, request_iterator: Any, context: Any) -> AsyncIterator[pb.ProcessingResponse]:
        async for request in request_iterator:
            kind = request.WhichOneof("request")
            if kind == "request_headers":
                if request.request_headers.end_of_stream:
                    common, target = self._mutation()
                    yield pb.ProcessingResponse(
                        request_headers=pb.HeadersResponse(response=common),
                        dynamic_metadata=self._metadata(target),
                    )
                else:
                    yield pb.ProcessingResponse(request_headers=pb.HeadersResponse())
            elif kind == "request_body":
                if not request.request_body.end_of_stream:
                    yield pb.ProcessingResponse(request_body=pb.BodyResponse())
                    continue
                common, target = self._mutation()
                yield pb.ProcessingResponse(
                    request_body=pb.BodyResponse(response=common), dynamic_metadata=self._metadata(target)
                )
            elif kind == "response_headers":
                yield pb.ProcessingResponse(response_headers=pb.HeadersResponse())
            elif kind == "response_body":
                yield pb.ProcessingResponse(response_body=pb.BodyResponse())

    async def start(self) -> None:
        server = grpc.aio.server()
        pb_grpc.add_ExternalProcessorServicer_to_server(self, server)
        server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
            self._server = None


@contextlib.asynccontextmanager
async def running(*things: EchoServers | StampingEpp) -> AsyncIterator[None]:
    started: list[EchoServers | StampingEpp] = []
    try:
        for thing in things:
            await thing.start()
            started.append(thing)
        yield
    finally:
        for thing in reversed(started):
            await thing.stop()


async def post_reading_early_response(
    port: int, path: str, body: bytes, headers: dict[str, str], *, timeout_s: float = 20.0
) -> tuple[int, dict[str, str]]:
    """POST ``body`` to 127.0.0.1:``port`` while reading the answer, as curl does.

    A gateway may answer before the body is complete (a 413 once its buffer limit is passed) and
    then close. A client that reads only after writing everything (httpx) may lose that answer:
    when the server closes with the rest of the body unread, its TCP reset can erase the answer
    from the client's receive buffer (RFC 9112 section 9.6). Returns the status and headers.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [f"POST {path} HTTP/1.1", f"host: 127.0.0.1:{port}", f"content-length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        response = asyncio.create_task(_read_response_head(reader))
        chunk = 64 * 1024
        async with asyncio.timeout(timeout_s):
            for start in range(0, len(body), chunk):
                if response.done():
                    break
                writer.write(body[start : start + chunk])
                try:
                    await writer.drain()
                except ConnectionError:
                    break
            return await response
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _read_response_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the connection closed before a response")
    status = int(status_line.split()[1])
    fields: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    return status, fields
