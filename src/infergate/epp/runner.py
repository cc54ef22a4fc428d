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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infergate.epp.extproc import ExtProcServer, HealthServer, HealthService
from infergate.epp.extproc.metrics_http import MetricsHTTPServer
from infergate.epp.extproc.server import self_signed_credentials, server_credentials

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EPPOptions:
    pool_name: str
    pool_namespace: str = "default"
    pool_group: str = "inference.networking.k8s.io"
    host: str = "0.0.0.0"
    grpc_port: int = 9002
    grpc_health_port: int = 9003
    metrics_port: int = 9090
    config_file: str | None = None
    config_text: str | None = None
    refresh_metrics_interval: float = 0.05
    refresh_prometheus_metrics_interval: float = 5.0
    metrics_staleness_threshold: float = 2.0
    static_file: str | None = None
    kubeconfig: str | None = None
    model_server_protocol: str = "vllm"
    total_queued_requests_metric: str | None = None
    kv_cache_usage_percentage_metric: str | None = None
    lora_info_metric: str | None = None  # "" disables LoRA scraping
    model_server_metrics_port: int = 0
    model_server_metrics_path: str = "/metrics"
    model_server_metrics_scheme: str = "http"
    error_body: str = "json"
    health_checking: bool = False
    secure_serving: bool = False
    cert_path: str | None = None
    seed: int | None = None
    flow_control: bool = False
    flow_control_max_queued: int = 1024
    flow_control_max_wait: float = 30.0
    shutdown_grace: float = 5.0

    @classmethod
    def from_cli(cls, options: Mapping[str, Any]) -> EPPOptions:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in options.items() if k in names})

    def config_yaml(self) -> str | None:
        if self.config_file:
            return Path(self.config_file).read_text()
        return self.config_text


class EPPRunner:
    """Starts and stops every part of one EPP process (usable in-process by tests)."""

    def __init__(self, options: EPPOptions) -> None:
        self.options = options
        self._tasks: list[asyncio.Task[None]] = []
        self._stack = contextlib.AsyncExitStack()
        self.datastore: Any = None
        self.director: Any = None
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

    def _build(self) -> Any:
        """Datastore, metrics store, scraper, scheduler and director, wired as one EPP."""
        from infergate.epp.datastore import Datastore
        from infergate.epp.director import DirectorConfig, EppDirector
        from infergate.epp.flowcontrol import FlowControlConfig
        from infergate.epp.metrics import EppMetrics
        from infergate.epp.metrics_scraper import MetricsScraper, MetricsStore
        from infergate.epp.model_server_protocol import protocol_by_name
        from infergate.epp.saturation import SaturationConfig
        from infergate.epp.scheduling.config import load_config_text, preset_text

        opts = self.options
        config_yaml = opts.config_yaml() or preset_text("default")
        scheduler = load_config_text(config_yaml, seed=opts.seed)
        datastore = Datastore()
        store = MetricsStore(staleness_threshold=opts.metrics_staleness_threshold)
        protocol = protocol_by_name(opts.model_server_protocol).with_overrides(
            waiting_queue=opts.total_queued_requests_metric,
            kv_cache_usage=opts.kv_cache_usage_percentage_metric,
            lora_info=opts.lora_info_metric,
        )
        scraper = MetricsScraper(datastore, store, protocol, refresh_interval=opts.refresh_metrics_interval,
                                 path=opts.model_server_metrics_path, scheme=opts.model_server_metrics_scheme,
                                 metrics_port=opts.model_server_metrics_port)
        metrics = EppMetrics()
        config = DirectorConfig(
            flow_control=FlowControlConfig(enabled=opts.flow_control, max_queued=opts.flow_control_max_queued,
                                           max_wait=opts.flow_control_max_wait),
            saturation=SaturationConfig.from_env(),
            seed=opts.seed,
        )
        director = EppDirector(datastore, scheduler, store, config=config, metrics=metrics)
        return datastore, scraper, director, metrics.registry

    async def start(self) -> None:
        opts = self.options
        self.datastore, scraper, self.director, registry = self._build()
        source = self._source()
        self._tasks.append(asyncio.get_running_loop().create_task(self._run_source(source), name="pool source"))
        await scraper.start()
        self._stack.push_async_callback(scraper.stop)
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
        )
        self.health_server = HealthServer(health, host=opts.host, port=opts.grpc_health_port)
        self.metrics_server = MetricsHTTPServer(registry, host=opts.host, port=opts.metrics_port)
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
    from infergate.cli.epp import run_until_signal

    runner = EPPRunner(options)
    try:
        await runner.start()
        if ready is not None:
            ready(runner.ready_line())
        await run_until_signal()
    finally:
        await runner.stop()
