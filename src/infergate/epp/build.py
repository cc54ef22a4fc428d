"""Wire the scheduling side of one EPP from options: datastore, metrics store + scraper, director.

``build_epp(options)`` reads these attributes of ``options`` (missing ones take the default
shown), so the runner's options dataclass and tests can both call it:

======================================  ===========  =============================================
attribute                               default      meaning
======================================  ===========  =============================================
config_file / config_text               None         EndpointPickerConfig YAML (neither: preset)
scheduling_preset                       "default"    preset used when no config is given
seed                                    None         seeds the scheduler and the director
model_server_protocol                   "vllm"       vllm | sglang | triton-tensorrt-llm
total_queued_requests_metric            None         overrides the protocol's queue metric spec
kv_cache_usage_percentage_metric        None         overrides the KV cache metric spec
lora_info_metric                        None         overrides the LoRA metric spec ("" disables)
refresh_metrics_interval                0.05         seconds between scrapes of one endpoint
metrics_staleness_threshold             2.0          older metrics are unknown to the scheduler
model_server_metrics_port / _path / _scheme  0, /metrics, http
flow_control                            False        priority queueing when saturated
flow_control_max_queue / _max_wait      1024, 30.0
sd_queue_depth_threshold etc.           env SD_*     saturation thresholds (upstream env vars)
======================================  ===========  =============================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from infergate.epp.datastore import Datastore
from infergate.epp.director import DirectorConfig, EppDirector
from infergate.epp.flowcontrol import FlowControlConfig
from infergate.epp.metrics import EppMetrics
from infergate.epp.metrics_scraper import MetricsScraper, MetricsStore
from infergate.epp.model_server_protocol import protocol_by_name
from infergate.epp.saturation import SaturationConfig
from infergate.epp.scheduling.config import load_config_text, load_preset
from infergate.epp.scheduling.framework import Scheduler


class Background(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class EppParts:
    datastore: Datastore
    store: MetricsStore
    scraper: MetricsScraper
    scheduler: Scheduler
    director: EppDirector
    metrics: EppMetrics
    background: list[Background] = field(default_factory=list)  # start() in order, stop() in reverse

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry


def _opt(options: Any, name: str, default: Any) -> Any:
    value = getattr(options, name, None)
    return default if value is None else value


def build_scheduler_from(options: Any) -> Scheduler:
    seed = _opt(options, "seed", None)
    text = None
    config_file = _opt(options, "config_file", None)
    if config_file:
        from infergate.epp.scheduling.config import load_config_file

        return load_config_file(config_file, seed=seed)
    text = _opt(options, "config_text", None)
    if text:
        return load_config_text(text, seed=seed)
    return load_preset(_opt(options, "scheduling_preset", "default"), seed=seed)


def build_epp(options: Any) -> EppParts:
    datastore = Datastore()
    store = MetricsStore(staleness_threshold=float(_opt(options, "metrics_staleness_threshold", 2.0)))
    protocol = protocol_by_name(_opt(options, "model_server_protocol", "vllm")).with_overrides(
        waiting_queue=getattr(options, "total_queued_requests_metric", None),
        kv_cache_usage=getattr(options, "kv_cache_usage_percentage_metric", None),
        lora_info=getattr(options, "lora_info_metric", None),
    )
    scraper = MetricsScraper(
        datastore, store, protocol,
        refresh_interval=float(_opt(options, "refresh_metrics_interval", 0.05)),
        path=_opt(options, "model_server_metrics_path", "/metrics"),
        scheme=_opt(options, "model_server_metrics_scheme", "http"),
        metrics_port=int(_opt(options, "model_server_metrics_port", 0)),
    )
    scheduler = build_scheduler_from(options)
    saturation = SaturationConfig.from_env()
    saturation = SaturationConfig(
        int(_opt(options, "sd_queue_depth_threshold", saturation.queue_depth_threshold)),
        float(_opt(options, "sd_kv_cache_util_threshold", saturation.kv_cache_util_threshold)),
        float(_opt(options, "sd_metrics_staleness_threshold", saturation.metrics_staleness_threshold)),
    )
    config = DirectorConfig(
        flow_control=FlowControlConfig(
            enabled=bool(_opt(options, "flow_control", False)),
            max_queued=int(_opt(options, "flow_control_max_queue", 1024)),
            max_wait=float(_opt(options, "flow_control_max_wait", 30.0)),
        ),
        saturation=saturation,
        seed=_opt(options, "seed", None),
    )
    metrics = EppMetrics()
    director = EppDirector(datastore, scheduler, store, config=config, metrics=metrics)
    return EppParts(datastore, store, scraper, scheduler, director, metrics, [scraper])
