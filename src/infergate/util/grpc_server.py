"""One grpc.aio server on ``host:port``, with TLS when given credentials: the shape every
gRPC service of infergate (ext_proc, BBR, health) is served in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc


class GrpcServer:
    """Binds ``host:port`` on ``start`` (``port=0``: a free port; ``self.port`` is then the bound one);
    ``OSError`` when it cannot.

    Subclasses add their services in ``register``.
    """

    default_grace_s: float | None = 5.0  # how long ``stop`` lets in-flight calls finish

    def __init__(self, *, host: str, port: int, credentials: grpc.ServerCredentials | None = None,
                 options: Sequence[tuple[str, Any]] = ()) -> None:
        self._host = host
        self._requested_port = port
        self._credentials = credentials
        self._options = list(options)
        self._server: grpc.aio.Server | None = None
        self.port = port

    def register(self, server: grpc.aio.Server) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        server = grpc.aio.server(options=self._options)
        self.register(server)
        address = f"{self._host}:{self._requested_port}"
        try:
            if self._credentials is not None:
                self.port = server.add_secure_port(address, self._credentials)
            else:
                self.port = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpc says only "Failed to bind to address ...", whatever the reason
            await server.stop(None)
            raise OSError(f"cannot listen on {address}: in use, or not an address of this machine") from exc
        await server.start()
        self._server = server

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls; in-flight ones get ``grace`` seconds (default ``default_grace_s``)."""
        if self._server is not None:
            await self._server.stop(self.default_grace_s if grace is None else grace)
            self._server = None

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()
