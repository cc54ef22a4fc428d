"""Wire the scheduling side of one EPP from ``EPPOptions``: datastore, metrics store + scraper,
scheduler, director and the EPP's own metrics.

``build_epp`` is the one wiring: ``infergate epp`` (through ``EPPRunner``), the benchmarks and
the tests all call it, so what is tested is what runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry

from infergate.epp.datastore import Datastore
from infergate.epp.director import DirectorConfig, EppDirector
from infergate.epp.flowcontrol import FlowControlConfig
from infergate.epp.metrics import EppMetrics
from infergate.epp.metrics_scraper import MetricsScraper, MetricsStore
from infergate.epp.model_server_protocol import ModelServerProtocol, protocol_by_name
from infergate.epp.options import EPPOptions
from infergate.epp.pick_sharing import PickSharing, PickSharingError, load_producers, prefix_scorers
from infergate.epp.saturation import PREFILL_DUTY_SCRAPES, PREFILL_DUTY_TIME_CONSTANT_S, SaturationConfig
from infergate.epp.scheduling.config import load_config_file, load_config_text, load_preset
from infergate.epp.scheduling.framework import Scheduler
from infergate.epp.scheduling.plugins.inflight import pick_time_producer


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


def build_scheduler(options: EPPOptions) -> Scheduler:
    """The scheduler from ``config_file`` / ``config_text``, else the named preset."""
    if options.config_file:
        return load_config_file(options.config_file, seed=options.seed)
    if options.config_text:
        return load_config_text(options.config_text, seed=options.seed)
    return load_preset(options.scheduling_preset, seed=options.seed)


def model_server_protocol(options: EPPOptions) -> ModelServerProtocol:
    """The protocol's metric names with the ``--*-metric`` overrides applied."""
    protocol = protocol_by_name(options.model_server_protocol).with_overrides(
        waiting_queue=options.total_queued_requests_metric,
        kv_cache_usage=options.kv_cache_usage_percentage_metric,
        lora_info=options.lora_info_metric,
    )
    if options.sd_sheddable_ttft_objective or options.sd_sheddable_itl_objective:
        protocol = protocol.with_latency()  # the latency holdback reads the TTFT / ITL histograms
    return protocol


def saturation_config(options: EPPOptions) -> SaturationConfig:
    """Upstream's SD_* environment variables (or defaults), overridden by the options that are set;
    the prefill holdback's time constant is ``PREFILL_DUTY_SCRAPES`` refresh intervals."""
    env = SaturationConfig.from_env()
    return SaturationConfig(
        env.queue_depth_threshold if options.sd_queue_depth_threshold is None else options.sd_queue_depth_threshold,
        env.kv_cache_util_threshold if options.sd_kv_cache_util_threshold is None
        else options.sd_kv_cache_util_threshold,
        env.metrics_staleness_threshold if options.sd_metrics_staleness_threshold is None
        else options.sd_metrics_staleness_threshold,
        max_inflight_per_endpoint=options.sd_max_inflight_per_endpoint,
        max_pending_prefill_tokens=options.sd_max_pending_prefill_tokens,
        sheddable_max_inflight_per_endpoint=options.sd_sheddable_max_inflight_per_endpoint,
        sheddable_max_pending_prefill_tokens=options.sd_sheddable_max_pending_prefill_tokens,
        sheddable_max_prefill_busy_fraction=options.sd_sheddable_max_prefill_busy_fraction,
        prefill_duty_time_constant=PREFILL_DUTY_SCRAPES * options.refresh_metrics_interval
        if options.refresh_metrics_interval > 0 else PREFILL_DUTY_TIME_CONSTANT_S,
        sheddable_ttft_objective=options.sd_sheddable_ttft_objective,
        sheddable_itl_objective=options.sd_sheddable_itl_objective,
    )


def director_config(options: EPPOptions, *, accounts_picks: bool) -> DirectorConfig:
    """The Director's settings; ``accounts_picks``: the profile has pick-time accounting
    (``pick_time_producer``), which turns flow control on unless ``options.flow_control`` says."""
    flow_control = accounts_picks if options.flow_control is None else options.flow_control
    return DirectorConfig(
        flow_control=FlowControlConfig(enabled=flow_control, max_queued=options.flow_control_max_queued,
                                       max_wait=options.flow_control_max_wait,
                                       placement=options.flow_control_placement),
        saturation=saturation_config(options),
        seed=options.seed,
    )


def build_epp(options: EPPOptions) -> EppParts:
    datastore = Datastore()
    store = MetricsStore(staleness_threshold=options.metrics_staleness_threshold)
    scraper = MetricsScraper(
        datastore, store, model_server_protocol(options),
        refresh_interval=options.refresh_metrics_interval,
        path=options.model_server_metrics_path,
        scheme=options.model_server_metrics_scheme,
        metrics_port=options.model_server_metrics_port,
    )
    scheduler = build_scheduler(options)
    metrics = EppMetrics(pool_gauges_interval=options.refresh_prometheus_metrics_interval)
    config = director_config(options, accounts_picks=pick_time_producer(scheduler) is not None)
    director = EppDirector(datastore, scheduler, store, config=config, metrics=metrics)
    background: list[Background] = [scraper]
    if options.pick_sharing_port or options.pick_sharing_peers or options.pick_sharing_peer_pods:
        background.append(pick_sharing(options, scheduler, metrics, datastore))
    return EppParts(datastore, store, scraper, scheduler, director, metrics, background)


def pick_sharing(options: EPPOptions, scheduler: Scheduler, metrics: EppMetrics, datastore: Datastore) -> PickSharing:
    """Pick sharing for the config's prefix-cache scorers (``--pick-sharing-port`` / ``-peers``)."""
    scorers = prefix_scorers(scheduler.plugins)
    if not scorers:
        raise PickSharingError("--pick-sharing-port: the scheduling config has no prefix-cache "
                         "scorer (prefix-cache-scorer or precise-prefix-cache-scorer): there is no index to share")
    if not options.pick_sharing_port:
        raise PickSharingError("--pick-sharing-peers/--pick-sharing-peer-pods need --pick-sharing-port (the port "
                               "this EPP publishes its picks on)")
    return PickSharing(scorers, bind_host=options.host, port=options.pick_sharing_port,
                       peers=options.pick_sharing_peers, registry=metrics.registry,
                       producers=load_producers(scheduler.plugins, scorers),
                       known_endpoint=lambda hostport: datastore.endpoint(hostport) is not None)
