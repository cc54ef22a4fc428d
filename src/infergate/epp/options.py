"""``EPPOptions``: every setting of one EPP, the one type the CLI, the runner, the benchmarks and
the tests hand to ``infergate.epp.build.build_epp`` / ``infergate.epp.runner.EPPRunner``.

Field names are the ``infergate epp`` flags with ``_`` for ``-`` (``--flow-control-max-queued``
-> ``flow_control_max_queued``); durations are seconds. ``from_cli`` keeps the flags that are
fields and ignores the process-only ones (``--v``, ``--zap-encoder``, ``--enable-pprof``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class EPPOptions:
    pool_name: str
    pool_namespace: str = "default"
    pool_group: str = "inference.networking.k8s.io"
    # serving
    host: str = "0.0.0.0"
    grpc_port: int = 9002
    grpc_health_port: int = 9003
    metrics_port: int = 9090
    error_body: str = "json"  # json | text
    health_checking: bool = False
    secure_serving: bool = False
    cert_path: str | None = None
    shutdown_grace: float = 5.0
    # pool source
    static_file: str | None = None
    kubeconfig: str | None = None
    # scheduling: config file, inline config, or a named preset when neither is given
    config_file: str | None = None
    config_text: str | None = None
    scheduling_preset: str = "default"
    seed: int | None = None
    # model-server metrics
    model_server_protocol: str = "vllm"  # vllm | sglang | triton-tensorrt-llm
    total_queued_requests_metric: str | None = None  # None: the protocol's
    kv_cache_usage_percentage_metric: str | None = None
    lora_info_metric: str | None = None  # "" disables LoRA scraping
    model_server_metrics_port: int = 0  # 0: the pool's target port
    model_server_metrics_path: str = "/metrics"
    model_server_metrics_scheme: str = "http"
    refresh_metrics_interval: float = 0.05
    metrics_staleness_threshold: float = 2.0
    # the EPP's own Prometheus gauges (inference_pool_*): recomputed this often
    refresh_prometheus_metrics_interval: float = 5.0
    # saturation detector: None takes upstream's env var (SD_QUEUE_DEPTH_THRESHOLD, ...) or default
    sd_queue_depth_threshold: int | None = None
    sd_kv_cache_util_threshold: float | None = None
    sd_metrics_staleness_threshold: float | None = None
    # pick-time saturation limits (infergate; saturation.py): None = auto (on with the defaults
    # when the profile has an inflight-load-producer, else off), 0 = off
    sd_max_inflight_per_endpoint: int | None = None
    sd_max_pending_prefill_tokens: int | None = None
    # priority holdback (infergate; saturation.py): sheddable requests shed where the picked endpoint and
    # the pool (on average) have this many in flight; None and 0 = off (no default suits every pool)
    sd_sheddable_max_inflight_per_endpoint: int | None = None
    # prefill holdback (infergate; saturation.py): sheddable requests shed where the picked endpoint and
    # the pool (on average) have more prefill tokens pending; None = auto (512 with pick-time accounting)
    sd_sheddable_max_pending_prefill_tokens: int | None = None
    # ... and over time: where the picked endpoint and the pool (on average) had prompts pending prefill
    # more than this fraction of the recent time; None = auto (0.5 with pick-time accounting), 0 = off
    sd_sheddable_max_prefill_busy_fraction: float | None = None
    # latency holdback (infergate; saturation.py): sheddable requests shed while the pool's recent mean
    # TTFT / inter-token latency (scraped vLLM histograms) is over 0.7x these objectives (seconds), until
    # under 0.4x; None and 0 = off
    sd_sheddable_ttft_objective: float | None = None
    sd_sheddable_itl_objective: float | None = None
    # flow control (infergate's): requests wait in the EPP, by priority, while the pool has no room;
    # None = auto: on with a profile that accounts its picks (infergate's default), off otherwise
    flow_control: bool | None = None
    flow_control_max_queued: int = 1024
    flow_control_max_wait: float = 30.0
    flow_control_placement: str = "scheduler"  # scheduler | headroom (FlowControlConfig.placement)
    # pick sharing between EPP replicas active-active (epp/pick_sharing.py): publish this EPP's picks on
    # this port (0 = off) and apply the picks of the peers (HOST:PORT; a DNS name may stand for several)
    pick_sharing_port: int = 0
    pick_sharing_peers: tuple[str, ...] = ()
    pick_sharing_peer_pods: str | None = None  # a label selector over the pool namespace's pods
    # high availability: leader election on the pool's Lease (only the leader is ready)
    ha_enable_leader_election: bool = False
    ha_lease_duration: float = 15.0  # controller-runtime's defaults, as upstream's EPP
    ha_renew_deadline: float = 10.0
    ha_retry_period: float = 2.0

    @classmethod
    def from_cli(cls, options: Mapping[str, Any]) -> EPPOptions:
        """The options from parsed ``infergate epp`` flags (click's parameter dict)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in names})
