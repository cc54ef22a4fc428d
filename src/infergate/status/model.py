"""The typed snapshot ``infergate status`` shows (``to_dict()`` is its JSON form)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class GatewayStatus:
    namespace: str
    name: str
    gateway_class: str
    addresses: list[str]
    programmed: bool | None  # None: no Programmed condition (not handled by a controller yet)
    programmed_reason: str
    programmed_message: str
    listeners: list[str]  # "name port/protocol"


@dataclass(frozen=True)
class Backend:
    group: str
    kind: str
    namespace: str
    name: str
    weight: int
    share: float  # weight / sum of the rule's weights (0..1)


@dataclass(frozen=True)
class RouteRule:
    matches: list[str]
    backends: list[Backend]


@dataclass(frozen=True)
class RouteStatus:
    namespace: str
    name: str
    parents: list[str]
    accepted: bool | None
    resolved_refs: bool | None
    message: str
    rules: list[RouteRule]


@dataclass(frozen=True)
class EndpointStatus:
    name: str
    address: str
    port: int
    ready: bool
    metrics_url: str
    reachable: bool
    error: str | None = None
    queue: float | None = None  # requests waiting
    running: float | None = None
    kv_cache: float | None = None  # usage, 0..1
    prefix_cache_hit_rate: float | None = None  # 0..1 (in the sample window when there were queries)
    lora_running: list[str] = field(default_factory=list)
    lora_waiting: list[str] = field(default_factory=list)
    ttft_p50_s: float | None = None  # in the sample window
    ttft_p90_s: float | None = None
    # in the sample window: the requests the pool's EPP sent to this endpoint and the responses
    # >= 400 it saw from it (infergate_epp_endpoint_*); without those, the model server's own
    # count of finished requests (all of its traffic, no errors). None: not measurable.
    requests_per_s: float | None = None
    errors_per_s: float | None = None
    requests_source: str | None = None  # "epp" or "model server"


@dataclass(frozen=True)
class Traffic:
    """Requests of a pool in the window between the two samples."""

    window_s: float
    requests: float
    errors: float
    requests_per_s: float
    errors_per_s: float
    error_ratio: float | None
    latency_p50_s: float | None  # the EPP's inference_model_request_duration_seconds
    latency_p90_s: float | None
    ttft_p50_s: float | None  # the model servers' time-to-first-token histograms, summed
    ttft_p90_s: float | None
    errors_by_code: dict[str, float] = field(default_factory=dict)
    # requests waiting in the EPP's flow control at the second sample (its
    # inference_extension_flow_control_queue_size gauge); None when the EPP exports no such gauge
    held_in_epp: float | None = None


@dataclass(frozen=True)
class Objective:
    name: str
    priority: int | None


@dataclass(frozen=True)
class Model:
    """A preview InferenceModel."""

    name: str
    model_name: str
    criticality: str | None
    target_models: list[str]


@dataclass(frozen=True)
class PoolStatus:
    namespace: str
    name: str
    group: str
    generation: str  # "GA" or "preview"
    selector: dict[str, str]
    target_ports: list[int]
    epp: str  # "service:port"
    epp_metrics_url: str | None
    epp_reachable: bool
    epp_error: str | None
    failure_mode: str
    accepted: bool | None
    endpoints: list[EndpointStatus]
    objectives: list[Objective]
    models: list[Model]
    traffic: Traffic | None


@dataclass(frozen=True)
class StatusSnapshot:
    source: str  # where the objects came from
    taken_at: str  # RFC 3339 (the second sample)
    sample_interval_s: float
    gateways: list[GatewayStatus]
    routes: list[RouteStatus]
    pools: list[PoolStatus]
    errors: list[str] = field(default_factory=list)  # what could not be read

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def pool(self, name: str, namespace: str = "default") -> PoolStatus:
        for pool in self.pools:
            if pool.name == name and pool.namespace == namespace:
                return pool
        raise KeyError(f"{namespace}/{name}")
