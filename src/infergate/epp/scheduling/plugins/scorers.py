"""Load and LoRA scorers (upstream semantics; unknown metrics score 0, never as idle)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infergate.epp.scheduling.framework import Candidate, CycleState, Plugin, PluginHandle, SchedulingRequest
from infergate.epp.scheduling.plugins.params import check_keys, int_param


class QueueScorer(Plugin):
    """``(max - q) / (max - min)`` over candidates with known metrics (q = waiting queue); 1.0 for
    all when equal. ``includeInflight: true`` (infergate option, default off = upstream) adds the
    requests this EPP sent that are not finished, which reacts between scrapes."""

    type_name = "queue-scorer"

    def __init__(self, name: str, include_inflight: bool = False) -> None:
        super().__init__(name)
        self.include_inflight = include_inflight

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> QueueScorer:
        check_keys(params, ("includeInflight",))
        flag = params.get("includeInflight", False)
        if not isinstance(flag, bool):
            from infergate.epp.scheduling.framework import ConfigError

            raise ConfigError(f".includeInflight: must be a boolean, got {flag!r}")
        return cls(name, flag)

    def score(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[float]:
        inflight = self.include_inflight
        queues: list[float | None] = []
        for c in candidates:
            m = c.metrics
            if m is None:
                queues.append(None)
            else:
                queues.append(m.waiting_queue + (c.inflight if inflight else 0))
        known = [q for q in queues if q is not None]
        if not known:
            return [0.0] * len(candidates)
        low, high = min(known), max(known)
        if high == low:
            return [0.0 if q is None else 1.0 for q in queues]
        span = high - low
        return [0.0 if q is None else (high - q) / span for q in queues]


class KvCacheUtilizationScorer(Plugin):
    """``1 - KV cache utilization``."""

    type_name = "kv-cache-utilization-scorer"

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> KvCacheUtilizationScorer:
        check_keys(params, ())
        return cls(name)

    def score(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[float]:
        return [0.0 if c.metrics is None else 1.0 - c.metrics.kv_cache_usage for c in candidates]


class LoraAffinityScorer(Plugin):
    """1.0 adapter active; 0.8 free adapter slot; 0.6 adapter waiting; else 0 (upstream v1.0)."""

    type_name = "lora-affinity-scorer"

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> LoraAffinityScorer:
        check_keys(params, ())
        return cls(name)

    def score(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[float]:
        model = request.target_model
        scores: list[float] = []
        for c in candidates:
            m = c.metrics
            if m is None:
                scores.append(0.0)
            elif model in m.active_models:
                scores.append(1.0)
            elif len(m.active_models) + len(m.waiting_models) < m.max_active_models:
                scores.append(0.8)
            elif model in m.waiting_models:
                scores.append(0.6)
            else:
                scores.append(0.0)
        return scores


class ActiveRequestScorer(Plugin):
    """infergate addition (like llm-d's): prefers endpoints with fewer requests in flight from
    this EPP, ``1 - inflight / maxInflight`` (floored at 0). Router-local, so it reacts between
    scrapes and avoids sending a burst to the endpoint that looked idle at the last scrape."""

    type_name = "active-request-scorer"

    def __init__(self, name: str, max_inflight: int = 32) -> None:
        super().__init__(name)
        self.max_inflight = max_inflight

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> ActiveRequestScorer:
        check_keys(params, ("maxInflight",))
        return cls(name, int_param(params, "maxInflight", 32, minimum=1))

    def score(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[float]:
        limit = self.max_inflight
        return [max(0.0, 1.0 - c.inflight / limit) for c in candidates]
