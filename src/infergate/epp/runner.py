"""Process wiring of the EPP: source -> datastore -> scraper -> director -> ext_proc server.

``EPPRunner`` owns, for one InferencePool:

* the pool source (static file or Kubernetes API) feeding a ``Datastore``;
* the model-server metrics scraper (``--refresh-metrics-interval``);
* the ``Director`` (scheduling profiles from the EndpointPickerConfig, saturation, flow control);
* the ext_proc gRPC server (``--grpc-port``, optionally with grpc.health.v1 on the same port);
* grpc.health.v1 on ``--grpc-health-port``: ``liveness``, ``readiness`` and the ext_proc
  service name as the EPP protocol defines them (see :mod:`infergate.epp.readiness`);
* Prometheus ``/metrics`` on ``--metrics-port`` (the EPP's registry, upstream's names);
* with ``--ha-enable-leader-election``, a :class:`~infergate.kube.leader.LeaderElector` on the
  pool's Lease: only the leader is ready; the others keep their datastore and metrics warm
  (same source, same scraping) so that they can take over as soon as they lead.

``stop`` shuts down in reverse order: readiness goes false and the Lease is given back (another
replica takes over at its next read), the ext_proc server stops accepting new streams and
gives in-flight ones a grace period, then the health and metrics servers, the scraper and
the source stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from infergate.epp.build import EppParts, build_epp
from infergate.epp.datastore import Datastore
from infergate.epp.director import EppDirector
from infergate.epp.extproc import ExtProcServer, HealthServer, HealthService
from infergate.epp.extproc.metrics_http import MetricsHTTPServer
from infergate.epp.extproc.server import self_signed_credentials, server_credentials
from infergate.epp.options import EPPOptions
from infergate.epp.readiness import Readiness, health_names, lease_name
from infergate.epp.scheduling.plugins.precise_prefix import DatastoreAware
from infergate.epp.sources.kubernetes import KubernetesSource
from infergate.kube.client import KubeClient
from infergate.kube.config import load_config
from infergate.kube.leader import LeaderElector, default_identity
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
        self.readiness: Readiness | None = None
        self.elector: LeaderElector | None = None
        self._source_listed: Callable[[], bool] | None = None
        self._elector_task: asyncio.Task[None] | None = None
        self._stopping = False
        if options.ha_enable_leader_election and options.static_file:
            raise ValueError("--ha-enable-leader-election needs the Kubernetes API (a Lease); "
                             "it cannot be used with --static-file")
        if options.ha_enable_leader_election and not (
                0 < options.ha_retry_period < options.ha_renew_deadline < options.ha_lease_duration):
            raise ValueError("leader election needs --ha-retry-period < --ha-renew-deadline < --ha-lease-duration")

    def is_ready(self) -> bool:
        return not self._stopping and self.readiness is not None and self.readiness()

    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader

    async def start(self) -> None:
        opts = self.options
        self.parts = parts = build_epp(opts)
        self.datastore, self.director = parts.datastore, parts.director
        for plugin in self.director.scheduler.plugins.values():  # e.g. KV-event subscriptions
            if isinstance(plugin, DatastoreAware):
                self._stack.push_async_callback(plugin.aclose)
        self.readiness = Readiness(parts.datastore, parts.store, listed=lambda: self._listed(),
                                   leader=self.is_leader if opts.ha_enable_leader_election else None)
        self._tasks.append(asyncio.get_running_loop().create_task(self._run_source(parts.datastore), name="pool source"))
        self._tasks.append(asyncio.get_running_loop().create_task(self._log_warmup(self.readiness), name="warm-up"))
        for background in parts.background:
            await background.start()
            self._stack.push_async_callback(background.stop)
        known, live = health_names(opts.ha_enable_leader_election)
        health = HealthService(self.is_ready, known=known, live=live)
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

    @staticmethod
    async def _log_warmup(readiness: Readiness) -> None:
        """Note the moment the datastore is synced and scraped (it logs it), even when no probe asks;
        readiness itself is computed at each health check, so this loop delays nothing."""
        while not readiness.warm():
            await asyncio.sleep(0.01)

    def _listed(self) -> bool:
        return self._source_listed is not None and self._source_listed()

    async def _run_source(self, datastore: Datastore) -> None:
        opts = self.options
        try:
            if opts.static_file:
                # imported only when used: the file source's YAML validation is not needed on the Kubernetes path
                from infergate.epp.sources.static import StaticFileSource

                static = StaticFileSource(opts.static_file)
                self._source_listed = lambda: True  # pool and pods arrive together
                await static.run(datastore)
                return
            async with KubeClient(load_config(opts.kubeconfig)) as client:
                source = KubernetesSource(opts.pool_name, opts.pool_namespace, opts.pool_group, client=client)
                self._source_listed = lambda: source.endpoints_listed
                if opts.ha_enable_leader_election:
                    self._start_elector(client)
                try:
                    await source.run(datastore)
                finally:  # the elector uses this client: it stops (and gives the Lease back) first
                    await self._stop_elector()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pool source stopped with an error")

    def _start_elector(self, client: KubeClient) -> None:
        opts = self.options
        self.elector = LeaderElector(
            client, opts.pool_namespace, lease_name(opts.pool_namespace, opts.pool_name), default_identity(),
            lease_duration=opts.ha_lease_duration, renew_deadline=opts.ha_renew_deadline,
            retry_period=opts.ha_retry_period,
            on_started_leading=lambda: log.info("leader of the pool's EPPs: ready once the datastore is synced"),
            on_stopped_leading=lambda: log.info("not the leader any more: not ready"))
        self._elector_task = asyncio.get_running_loop().create_task(self.elector.run(), name="leader election")

    async def _stop_elector(self) -> None:
        task, self._elector_task = self._elector_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop(self) -> None:
        self._stopping = True  # not ready from now on: the Service stops sending here
        await self._stop_elector()  # give the Lease back before the grace period
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
