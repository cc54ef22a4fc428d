"""Serving the ext_proc servicer (and optionally the health service) on grpc.aio."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from infergate.api.limits import EXT_PROC_MAX_MESSAGE_BYTES
from infergate.epp.contract import Director
from infergate.epp.extproc.health import HealthService
from infergate.epp.extproc.servicer import ExtProcServicer, ResponseHeadersHook
from infergate.util.grpc_server import GrpcServer
from infergate.util.tls import ensure_certificate

log = logging.getLogger(__name__)

# Every in-flight HTTP request holds one ext_proc stream for its whole lifetime. A request body
# arrives in one message: accept every body the gateway lets through (api.limits).
_SERVER_OPTIONS = [
    ("grpc.max_concurrent_streams", 100_000),
    ("grpc.max_receive_message_length", EXT_PROC_MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
]


def server_credentials(cert_dir: Path) -> grpc.ServerCredentials:
    """TLS from ``tls.crt`` and ``tls.key`` in ``cert_dir`` (upstream's ``--cert-path`` layout)."""
    key = (cert_dir / "tls.key").read_bytes()
    cert = (cert_dir / "tls.crt").read_bytes()
    return grpc.ssl_server_credentials([(key, cert)])


def self_signed_credentials(host: str, directory: Path | None = None) -> tuple[grpc.ServerCredentials, bytes]:
    """A fresh self-signed certificate (as upstream's EPP makes without ``--cert-path``).

    Returns the server credentials and the certificate PEM (for clients that pin it).
    """
    import tempfile

    target = directory or Path(tempfile.mkdtemp(prefix="infergate-epp-tls-"))
    cert_path, _ = ensure_certificate(target, "127.0.0.1" if host in ("0.0.0.0", "", "::") else host)
    return server_credentials(target), cert_path.read_bytes()


class ExtProcServer(GrpcServer):
    """A grpc.aio server for ``ExternalProcessor`` on ``host:port``.

    ``health`` additionally registers ``grpc.health.v1`` on the same port (upstream's
    ``--health-checking``). ``port=0`` binds a free port; ``self.port`` is the bound one.
    """

    def __init__(self, director: Director, *, host: str = "0.0.0.0", port: int = 9002,
                 json_errors: bool = True, health: HealthService | None = None,
                 credentials: grpc.ServerCredentials | None = None,
                 response_headers: ResponseHeadersHook | None = None, hold_timeout: float | None = None,
                 may_hold: Callable[[], bool] | None = None) -> None:
        super().__init__(host=host, port=port, credentials=credentials, options=_SERVER_OPTIONS)
        self.servicer = ExtProcServicer(director, json_errors=json_errors, response_headers=response_headers,
                                        hold_timeout=hold_timeout, may_hold=may_hold)
        self._health = health

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_ExternalProcessorServicer_to_server(self.servicer, server)
        if self._health is not None:
            server.add_generic_rpc_handlers((self._health.handler(),))

    async def start(self) -> None:
        await super().start()
        log.info("ext_proc server listening on %s:%d", self._host, self.port)


class HealthServer(GrpcServer):
    """``grpc.health.v1`` alone on its own port (upstream's ``--grpc-health-port``)."""

    default_grace_s = 1.0

    def __init__(self, health: HealthService, *, host: str = "0.0.0.0", port: int = 9003) -> None:
        super().__init__(host=host, port=port)
        self._health = health

    def register(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((self._health.handler(),))
