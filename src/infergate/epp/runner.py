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
the source stop. Each step is bounded (the ext_proc server by its grace, the others by
``STOP_STEP_S``): a step that cannot finish (its peer is gone) is cancelled and the stop goes on.

``run_epp`` (the ``infergate epp`` process) also bounds the process: from the stop signal it
ends within ``shutdown_grace + STOP_MARGIN_S`` seconds, before a pod's SIGKILL, even if the
event loop itself is blocked (then the stacks of every thread go to stderr first). It keeps
grpc.aio's process-wide completion queue for the process's life: releasing the last gRPC
server shuts that queue down by joining its poller thread on the event loop's thread, a wait
with no bound (it ends with the process instead).
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc.aio

from infergate.epp.build import EppParts, build_epp
from infergate.epp.datastore import Datastore
from infergate.epp.director import EppDirector
from infergate.epp.extproc import ExtProcServer, HealthServer, HealthService
from infergate.epp.extproc.metrics_http import MetricsHTTPServer
from infergate.epp.extproc.server import self_signed_credentials, server_credentials
from infergate.epp.options import EPPOptions
from infergate.epp.pick_sharing import PickSharing, PodPeers, parse_selector
from infergate.epp.readiness import Readiness, health_names, lease_name
from infergate.epp.scheduling.plugins.precise_prefix import DatastoreAware
from infergate.epp.sources.kubernetes import KubernetesSource
from infergate.kube.client import KubeClient
from infergate.kube.config import KubeConfig, load_config
from infergate.kube.leader import RELEASE_TIMEOUT_S, LeaderElector, default_identity
from infergate.util.listening import listen
from infergate.util.signals import run_until_signal

log = logging.getLogger(__name__)

__all__ = ["EPPOptions", "EPPRunner", "run_epp"]

STOP_STEP_S = 2.0  # each stop step but the ext_proc grace: this long, then it is cancelled
STOP_CANCEL_S = 0.5  # a cancelled stop step: this long to unwind, then it is left behind
STOP_MARGIN_S = 3.0  # run_epp: the process ends at most shutdown_grace + this after the stop signal
HOLD_MARGIN_S = 1.0  # a request held by flow control: the proxy waits this much longer than the EPP

StopCall = Callable[[], Awaitable[object]]


async def bounded_stop(name: str, stop: StopCall, timeout: float) -> bool:
    """Run one stop step for at most ``timeout`` seconds; True if it finished.

    A step still running then (e.g. waiting for a peer that is gone) is cancelled and given
    ``STOP_CANCEL_S`` to unwind; a step that fails is logged. Neither stops the next steps."""
    task = asyncio.ensure_future(stop())
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if task in done:
        if not task.cancelled() and task.exception() is not None:
            log.warning("stopping %s failed: %s", name, task.exception())
        return True
    log.warning("stopping %s did not finish within %.1f s: cancelled", name, timeout)
    task.cancel()
    await asyncio.wait({task}, timeout=STOP_CANCEL_S)
    return False


class EPPRunner:
    """Starts and stops every part of one EPP process (usable in-process by tests)."""

    def __init__(self, options: EPPOptions) -> None:
        self.options = options
        self._tasks: list[asyncio.Task[None]] = []
        self._stops: list[tuple[str, StopCall, float]] = []  # (what, how, bound): run in reverse order
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
        self._kube_config: KubeConfig | None = None
        # set to the error if the pool source stops with one (the EPP is then of no use: run_epp exits)
        self.source_failed: asyncio.Future[BaseException] | None = None
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
        """Start every part; a kubeconfig that cannot be loaded raises ``ConfigError`` before anything listens."""
        opts = self.options
        if not opts.static_file:
            self._kube_config = load_config(opts.kubeconfig)
        self.source_failed = asyncio.get_running_loop().create_future()
        self.parts = parts = build_epp(opts)
        self.datastore, self.director = parts.datastore, parts.director
        for plugin in self.director.scheduler.plugins.values():  # e.g. KV-event subscriptions
            if isinstance(plugin, DatastoreAware):
                self._stops.append((f"plugin {type(plugin).__name__}", plugin.aclose, STOP_STEP_S))
        self.readiness = Readiness(parts.datastore, parts.store, listed=lambda: self._listed(),
                                   leader=self.is_leader if opts.ha_enable_leader_election else None)
        self._tasks.append(asyncio.get_running_loop().create_task(self._run_source(parts.datastore), name="pool source"))
        self._tasks.append(asyncio.get_running_loop().create_task(self._log_warmup(self.readiness), name="warm-up"))
        for background in parts.background:
            await background.start()
            self._stops.append((type(background).__name__, background.stop, STOP_STEP_S))
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
            # a request queued by flow control waits up to its max wait, then gets the EPP's own 429
            # (flow control as the Director has it: the option resolved for the profile, "auto" = on with
            # pick-time accounting)
            hold_timeout=opts.flow_control_max_wait + HOLD_MARGIN_S if self.director.config.flow_control.enabled
            else None,
            may_hold=self.director.may_hold,
        )
        self.health_server = HealthServer(health, host=opts.host, port=opts.grpc_health_port)
        self.metrics_server = MetricsHTTPServer(parts.registry, host=opts.host, port=opts.metrics_port)
        await listen("--metrics-port", opts.metrics_port, self.metrics_server.start)
        self._stops.append(("the metrics server", self.metrics_server.stop, STOP_STEP_S))
        await listen("--grpc-health-port", opts.grpc_health_port, self.health_server.start)
        self._stops.append(("the health server", self.health_server.stop, STOP_STEP_S))
        await listen("--grpc-port", opts.grpc_port, self.grpc_server.start)
        grpc_server, grace = self.grpc_server, opts.shutdown_grace
        self._stops.append(("the ext_proc server", lambda: grpc_server.stop(grace), grace + STOP_STEP_S))

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
            assert self._kube_config is not None  # loaded by start
            async with KubeClient(self._kube_config) as client:
                source = KubernetesSource(opts.pool_name, opts.pool_namespace, opts.pool_group, client=client,
                                          peer_pods=self._peer_pods())
                self._source_listed = lambda: source.endpoints_listed
                if opts.ha_enable_leader_election:
                    self._start_elector(client)
                try:
                    await source.run(datastore)
                finally:  # the elector uses this client: it stops (and gives the Lease back) first
                    await self._stop_elector()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("pool source stopped with an error")
            if self.source_failed is not None and not self.source_failed.done():
                self.source_failed.set_result(exc)

    def _peer_pods(self) -> PodPeers | None:
        """Pick sharing's peers from the pod watch (``--pick-sharing-peer-pods``)."""
        selector = self.options.pick_sharing_peer_pods
        sharing = next((b for b in self.parts.background if isinstance(b, PickSharing)), None) \
            if self.parts is not None else None
        if not selector or sharing is None:
            return None
        return PodPeers(parse_selector(selector), sharing)

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
            task.cancel()  # it gives the Lease back (bounded by RELEASE_TIMEOUT_S) as it unwinds
            await bounded_stop("leader election", lambda: asyncio.gather(task, return_exceptions=True),
                               RELEASE_TIMEOUT_S + STOP_STEP_S)

    async def stop(self) -> None:
        """Stop every part, each step bounded (see the module's docstring); idempotent."""
        self._stopping = True  # not ready from now on: the Service stops sending here
        await self._stop_elector()  # give the Lease back before the grace period
        stops, self._stops = self._stops, []
        for name, stop, bound in reversed(stops):
            await bounded_stop(name, stop, bound)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await bounded_stop("the pool source", lambda: asyncio.gather(*tasks, return_exceptions=True),
                               STOP_STEP_S)

    def ready_line(self) -> str:
        assert self.grpc_server and self.health_server and self.metrics_server
        return (f"ready grpc={self.grpc_server.port} health={self.health_server.port} "
                f"metrics={self.metrics_server.port}")


def arm_exit_deadline(seconds: float) -> bool:
    """End the process (exit code 1) in ``seconds`` unless it has ended by then, after writing
    the stack of every thread to stderr; this works even when the event loop is blocked
    (faulthandler's own thread). False when stderr has no file descriptor to write to."""
    try:
        faulthandler.dump_traceback_later(seconds, exit=True, file=sys.stderr)
    except (AttributeError, ValueError, OSError) as exc:  # e.g. stderr replaced by an object without fileno
        log.warning("no exit deadline for the stop: %s", exc)
        return False
    return True


class SourceFailed(Exception):
    """The pool source stopped with an error: the EPP cannot follow its pool any more, so the
    process stops (exit code 1) and its pod is restarted, instead of running never ready."""


async def run_epp(options: EPPOptions, *, ready: Callable[[str], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully, in bounded time (see the module's docstring).

    Raises ``ConfigError`` (from ``infergate.kube``) if the kubeconfig cannot be loaded, before
    anything listens, and ``SourceFailed`` after a graceful stop if the pool source stops with an error.
    """
    grpc.aio.init_grpc_aio()  # held for the process's life: its release would join a thread on this loop
    runner = EPPRunner(options)
    failure: BaseException | None = None
    try:
        await runner.start()
        assert runner.source_failed is not None
        stop_signal = asyncio.ensure_future(run_until_signal())
        await asyncio.sleep(0)  # its first step installs the signal handlers: before "ready" is said
        if ready is not None:
            ready(runner.ready_line())
        waits: set[asyncio.Future[Any]] = {stop_signal, runner.source_failed}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        bound = options.shutdown_grace + STOP_MARGIN_S
        if stop_signal.done():
            why = stop_signal.result().name
        else:
            stop_signal.cancel()  # its handlers are removed as it unwinds
            await asyncio.gather(stop_signal, return_exceptions=True)
            failure = runner.source_failed.result()
            why = "the pool source failed"
        log.info("%s: stopping (in-flight ext_proc streams get %g s; the process ends within %g s)",
                 why, options.shutdown_grace, bound)
        arm_exit_deadline(bound)
    finally:
        started = time.monotonic()
        await runner.stop()
        log.info("stopped in %.2f s", time.monotonic() - started)
    if failure is not None:
        raise SourceFailed(f"the pool source stopped: {type(failure).__name__}: {failure}") from failure
