"""The EPP's own Prometheus metrics, with upstream v1.0's names (gie.md §3.7).

Everything lives in a per-instance ``CollectorRegistry`` (no global registry), so several
EPPs can run in one process (tests, the benchmark). Pool-level gauges are computed when
scraped, from a snapshot function the Director provides, at most once per
``pool_gauges_interval``. Serve with ``prometheus_client.generate_latest(metrics.registry)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

DURATION_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20,
                    30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600)
REQUEST_SIZE_BUCKETS = tuple(float(64 * 4**i) for i in range(13))  # 64 B .. 1 GiB
RESPONSE_SIZE_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536)
TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536, 131072, 262144,
                 524288, 1048576)
SCHEDULER_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
RATIO_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class PoolSnapshot:
    """What the pool gauges report: per fresh endpoint (pod name, queue, KV use)."""

    pool_name: str
    endpoints: Sequence[tuple[str, int, float]]  # (pod name, waiting queue, kv cache usage)


class _PoolCollector(Collector):
    """The pool gauges from ``snapshot()``, recomputed when the last one is older than ``interval``
    seconds (upstream's ``--refresh-prometheus-metrics-interval``; 0 recomputes on every scrape)."""

    def __init__(self, snapshot: Callable[[], PoolSnapshot | None], interval: float,
                 clock: Callable[[], float]) -> None:
        self.snapshot = snapshot
        self._interval = interval
        self._clock = clock
        self._last: PoolSnapshot | None = None
        self._taken_at = 0.0

    def current(self) -> PoolSnapshot | None:
        now = self._clock()
        if self._last is None or now - self._taken_at >= self._interval:
            self._last, self._taken_at = self.snapshot(), now
        return self._last

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self.current()
        kv = GaugeMetricFamily("inference_pool_average_kv_cache_utilization",
                               "The average kv cache utilization for an inference server pool.", labels=["name"])
        queue = GaugeMetricFamily("inference_pool_average_queue_size",
                                  "The average number of requests pending in the model server queue.", labels=["name"])
        ready = GaugeMetricFamily("inference_pool_ready_pods",
                                  "The number of ready pods in the inference server pool.", labels=["name"])
        per_pod = GaugeMetricFamily("inference_pool_per_pod_queue_size",
                                    "The total number of requests pending in the model server queue for each pod.",
                                    labels=["name", "model_server_pod"])
        if snap is not None:
            n = len(snap.endpoints)
            if n:
                kv.add_metric([snap.pool_name], sum(e[2] for e in snap.endpoints) / n)
                queue.add_metric([snap.pool_name], float(sum(e[1] for e in snap.endpoints) // n))
            ready.add_metric([snap.pool_name], float(n))
            for pod, q, _ in snap.endpoints:
                per_pod.add_metric([snap.pool_name, pod], float(q))
        yield from (kv, queue, ready, per_pod)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class EppMetrics:
    """``pool_gauges_interval``: the pool gauges (``inference_pool_*``) are recomputed at most this
    often, in seconds (0: on every scrape); ``clock`` is the monotonic clock that interval is read on."""

    def __init__(self, registry: CollectorRegistry | None = None, *, pool_gauges_interval: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.pool_gauges_interval = pool_gauges_interval
        self._clock = clock
        r = self.registry
        model = ["model_name", "target_model_name"]
        self.request_total = Counter("inference_model_request", "Counter of inference model requests broken out for each model and target model.", model, registry=r)
        self.request_error_total = Counter("inference_model_request_error", "Counter of inference model requests errors broken out for each model and target model.", [*model, "error_code"], registry=r)
        self.request_duration = Histogram("inference_model_request_duration_seconds", "Inference model response latency distribution in seconds for each model and target model.", model, buckets=DURATION_BUCKETS, registry=r)
        self.request_sizes = Histogram("inference_model_request_sizes", "Inference model requests size distribution in bytes for each model and target model.", model, buckets=REQUEST_SIZE_BUCKETS, registry=r)
        self.response_sizes = Histogram("inference_model_response_sizes", "Inference model responses size distribution in bytes for each model and target model.", model, buckets=RESPONSE_SIZE_BUCKETS, registry=r)
        self.input_tokens = Histogram("inference_model_input_tokens", "Inference model input token count distribution for requests in each model.", model, buckets=TOKEN_BUCKETS, registry=r)
        self.output_tokens = Histogram("inference_model_output_tokens", "Inference model output token count distribution for requests in each model.", model, buckets=TOKEN_BUCKETS, registry=r)
        # infergate's own (not upstream's): the priority each scheduled request was admitted
        # with; objective = the InferenceObjective that set it ("" = none: preview criticality,
        # or no/unknown objective header -> 0). Counted with inference_model_request_total.
        self.request_priority_total = Counter("infergate_epp_request_priority", "Scheduled requests by the priority they were admitted with (infergate), per model, target model and InferenceObjective (empty: none; preview pools: from the InferenceModel's criticality).", [*model, "objective", "priority"], registry=r)
        # infergate's own: requests the EPP sent to each endpoint ("address:port") and those the
        # endpoint answered with an HTTP status >= 400 (infergate status and the dashboard's
        # per-endpoint rates; the label set follows the pool's endpoints)
        self.endpoint_requests_total = Counter("infergate_epp_endpoint_requests", "Requests the EPP picked each endpoint for (infergate), by endpoint address:port.", ["endpoint"], registry=r)
        self.endpoint_errors_total = Counter("infergate_epp_endpoint_errors", "Responses with an HTTP status >= 400 from each endpoint (infergate), by endpoint address:port.", ["endpoint"], registry=r)
        self.running_requests = Gauge("inference_model_running_requests", "Inference model number of running requests in each model.", ["model_name"], registry=r)
        self.scheduler_e2e = Histogram("inference_extension_scheduler_e2e_duration_seconds", "Scheduling latency distribution in seconds.", buckets=SCHEDULER_BUCKETS, registry=r)
        self.plugin_duration = Histogram("inference_extension_plugin_duration_seconds", "Plugin processing latency distribution in seconds for each extension point, plugin type and plugin name.", ["extension_point", "plugin_type", "plugin_name"], buckets=SCHEDULER_BUCKETS, registry=r)
        self.prefix_indexer_size = Gauge("inference_extension_prefix_indexer_size", "Size of the prefix indexer.", registry=r)
        self.prefix_hit_ratio = Histogram("inference_extension_prefix_indexer_hit_ratio", "Ratio of prefix length matched to total prefix length in the cache lookup.", buckets=RATIO_BUCKETS, registry=r)
        self.prefix_hit_bytes = Histogram("inference_extension_prefix_indexer_hit_bytes", "Length of the prefix match in number of bytes in the cache lookup.", buckets=REQUEST_SIZE_BUCKETS, registry=r)
        self.flow_control_queue_size = Gauge("inference_extension_flow_control_queue_size", "Requests waiting in the flow control queue (infergate).", registry=r)
        info = Gauge("inference_extension_info", "General information of the current build of Inference Extension.", ["commit", "build_ref"], registry=r)
        from infergate import __version__

        info.labels(commit="", build_ref=f"infergate-{__version__}").set(1)
        self._pool_collector: _PoolCollector | None = None

    def plugin_timer(self) -> Callable[[str, Any, float], None]:
        """A ``Scheduler.instrument`` timer feeding ``inference_extension_plugin_duration_seconds``
        (label children cached per plugin, so a call costs one dict lookup and one observe)."""
        children: dict[tuple[str, int], Any] = {}
        histogram = self.plugin_duration

        def timer(point: str, plugin: Any, seconds: float) -> None:
            key = (point, id(plugin))
            child = children.get(key)
            if child is None:
                child = children[key] = histogram.labels(point, getattr(plugin, "type_name", type(plugin).__name__),
                                                         getattr(plugin, "name", ""))
            child.observe(seconds)

        return timer

    def set_pool_snapshot(self, snapshot: Callable[[], PoolSnapshot | None]) -> None:
        if self._pool_collector is not None:
            self.registry.unregister(self._pool_collector)
        self._pool_collector = _PoolCollector(snapshot, self.pool_gauges_interval, self._clock)
        self.registry.register(self._pool_collector)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
