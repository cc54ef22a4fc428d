"""Process wiring of the EPP: source -> datastore -> scraper -> director -> ext_proc server.

``EPPRunner`` owns, for one InferencePool:

* the pool source (static file or Kubernetes API) feeding a ``Datastore``;
* the model-server metrics scraper (``--refresh-metrics-interval``);
* the ``Director`` (scheduling profiles from the EndpointPickerConfig, saturation, flow control);
* the ext_proc gRPC server (``--grpc-port``, optionally with grpc.health.v1 on the same port);
* grpc.health.v1 on ``--grpc-health-port``: SERVING once the pool is known (as upstream);
* Prometheus ``/metrics`` on ``--metrics-port`` (the EPP's registry, upstream's names).

``stop`` shuts down in reverse order: the ext_proc server stops accepting new streams and
gives in-flight ones a grace period, then the health and metrics servers, the scraper and
the source stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infergate.epp.build import EppParts, build_epp
from infergate.epp.datastore import Datastore
from infergate.epp.director import EppDirector
from infergate.epp.extproc import ExtProcServer, HealthServer, HealthService
from infergate.epp.extproc.metrics_http import MetricsHTTPServer
from infergate.epp.extproc.server import self_signed_credentials, server_credentials
from infergate.epp.options import EPPOptions
from infergate.epp.scheduling.plugins.precise_prefix import DatastoreAware
from infergate.util.signals import run_until_signal

log = logging.getLogger(__name__)

__all__ = ["EPPOptions", "EPPRunner", "run_epp"]


class EPPRunner:
    """Starts and stops every part of one EPP process (usable in-process by tests)."""

    def __init__(self, options: EPPOptions) -> None:
        self.options = options
        self._tasks: list[asyncio.Task[None]] = []
        self._stack = contextlib.AsyncExitStack()
        self.parts: EppParts | None = None
        self.datastore: Datastore | None = None
        self.director: EppDirector | None = None
        self.grpc_server: ExtProcServer | None = None
        self.health_server: HealthServer | None = None
        self.metrics_server: MetricsHTTPServer | None = None
        self.tls_certificate: bytes | None = None  # PEM of the ext_proc port's certificate, when TLS

    def _source(self) -> Any:
        opts = self.options
        if opts.static_file:
            from infergate.epp.sources.static import StaticFileSource

            return StaticFileSource(opts.static_file)
        from infergate.epp.sources.kubernetes import KubernetesSource

        return KubernetesSource(opts.pool_name, opts.pool_namespace, opts.pool_group, kubeconfig=opts.kubeconfig)

    def is_ready(self) -> bool:
        return bool(self.datastore is not None and self.datastore.synced)

    async def start(self) -> None:
        opts = self.options
        self.parts = parts = build_epp(opts)
        self.datastore, self.director = parts.datastore, parts.director
        for plugin in self.director.scheduler.plugins.values():  # e.g. KV-event subscriptions
            if isinstance(plugin, DatastoreAware):
                self._stack.push_async_callback(plugin.aclose)
        source = self._source()
        self._tasks.append(asyncio.get_running_loop().create_task(self._run_source(source), name="pool source"))
        for background in parts.background:
            await background.start()
            self._stack.push_async_callback(background.stop)
        health = HealthService(self.is_ready)
        credentials = None
        if opts.secure_serving:
            if opts.cert_path:
                credentials = server_credentials(Path(opts.cert_path))
                self.tls_certificate = (Path(opts.cert_path) / "tls.crt").read_bytes()
            else:  # upstream: a self-signed certificate when no --cert-path is given
                credentials, self.tls_certificate = self_signed_credentials(opts.host)
        self.grpc_server = ExtProcServer(
            self.director, host=opts.host, port=opts.grpc_port, json_errors=opts.error_body == "json",
            health=health if opts.health_checking else None, credentials=credentials,
            response_headers=parts.scheduler.response_headers if parts.scheduler.response_header_plugins else None,
        )
        self.health_server = HealthServer(health, host=opts.host, port=opts.grpc_health_port)
        self.metrics_server = MetricsHTTPServer(parts.registry, host=opts.host, port=opts.metrics_port)
        await self.metrics_server.start()
        self._stack.push_async_callback(self.metrics_server.stop)
        await self.health_server.start()
        self._stack.push_async_callback(self.health_server.stop)
        await self.grpc_server.start()
        self._stack.push_async_callback(self.grpc_server.stop, opts.shutdown_grace)

    async def _run_source(self, source: Any) -> None:
        try:
            await source.run(self.datastore)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pool source stopped with an error")

    async def stop(self) -> None:
        await self._stack.aclose()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def ready_line(self) -> str:
        assert self.grpc_server and self.health_server and self.metrics_server
        return (f"ready grpc={self.grpc_server.port} health={self.health_server.port} "
                f"metrics={self.metrics_server.port}")


async def run_epp(options: EPPOptions, *, ready: Callable[[str], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully."""
    runner = EPPRunner(options)
    try:
        await runner.start()
        if ready is not None:
            ready(runner.ready_line())
        await run_until_signal()
    finally:
        await runner.stop()
