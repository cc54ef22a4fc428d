"""Filters: least-loaded bands and LoRA affinity (v0.3.0's scheduler), capacity, and the test filter.

Endpoints with unknown metrics are dropped by the metric-based filters unless every
candidate is unknown (then all pass: nothing better is known).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from infergate.epp.scheduling.framework import Candidate, CycleState, Plugin, PluginHandle, SchedulingRequest
from infergate.epp.scheduling.plugins.params import check_keys, float_param, int_param, str_param


def _band(candidates: list[Candidate], value: Callable[[Candidate], float]) -> list[Candidate]:
    """v0.3.0's band: keep values in ``[min, min + (max - min) / len(candidates)]``."""
    known = [c for c in candidates if c.metrics is not None]
    if not known:
        return candidates
    values = [value(c) for c in known]
    low, high = min(values), max(values)
    limit = low + (high - low) / len(known)
    return [c for c, v in zip(known, values, strict=True) if v <= limit]


class LeastQueueFilter(Plugin):
    type_name = "least-queue-filter"

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> LeastQueueFilter:
        check_keys(params, ())
        return cls(name)

    def filter(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[Candidate]:
        return _band(candidates, lambda c: c.metrics.waiting_queue if c.metrics else 0)


class LeastKvCacheFilter(Plugin):
    type_name = "least-kv-cache-filter"

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> LeastKvCacheFilter:
        check_keys(params, ())
        return cls(name)

    def filter(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[Candidate]:
        return _band(candidates, lambda c: c.metrics.kv_cache_usage if c.metrics else 0.0)


class LowQueueFilter(Plugin):
    """Endpoints with capacity: waiting queue <= ``queueThreshold`` (5) and KV <= ``kvCacheThreshold`` (0.8)."""

    type_name = "low-queue-filter"

    def __init__(self, name: str, queue_threshold: int = 5, kv_threshold: float = 0.8) -> None:
        super().__init__(name)
        self.queue_threshold = queue_threshold
        self.kv_threshold = kv_threshold

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> LowQueueFilter:
        check_keys(params, ("queueThreshold", "kvCacheThreshold"))
        return cls(name, int_param(params, "queueThreshold", 5, minimum=0),
                   float_param(params, "kvCacheThreshold", 0.8, low=0.0, high=1.0))

    def filter(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[Candidate]:
        q, kv = self.queue_threshold, self.kv_threshold
        return [c for c in candidates
                if c.metrics is not None and c.metrics.waiting_queue <= q and c.metrics.kv_cache_usage <= kv]


class LoraAffinityFilter(Plugin):
    """v0.3.0 soft affinity: endpoints with the adapter active vs. with a free adapter slot; when
    both groups exist, the active group with probability ``threshold`` (0.999), else the other."""

    type_name = "lora-affinity-filter"

    def __init__(self, name: str, rng: Any, threshold: float = 0.999) -> None:
        super().__init__(name)
        self.rng = rng
        self.threshold = threshold

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> LoraAffinityFilter:
        check_keys(params, ("threshold",))
        return cls(name, handle.rng, float_param(params, "threshold", 0.999, low=0.0, high=1.0))

    def filter(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[Candidate]:
        model = request.target_model
        affinity: list[Candidate] = []
        available: list[Candidate] = []
        for c in candidates:
            m = c.metrics
            if m is None:
                continue
            if model in m.active_models:
                affinity.append(c)
            elif len(m.active_models) < m.max_active_models:
                available.append(c)
        if affinity and available:
            return affinity if self.rng.random() < self.threshold else available
        return affinity or available


class HeaderBasedTestingFilter(Plugin):
    """Conformance test filter: keep endpoints whose IP (or ip:port) is listed in header
    ``test-epp-endpoint-selection`` (comma-separated, header order); header missing -> none."""

    type_name = "header-based-testing-filter"

    def __init__(self, name: str, header: str = "test-epp-endpoint-selection") -> None:
        super().__init__(name)
        self.header = header.lower()

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> HeaderBasedTestingFilter:
        check_keys(params, ("headerName",))
        return cls(name, str_param(params, "headerName", "test-epp-endpoint-selection"))

    def filter(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[Candidate]:
        value = request.headers.get(self.header, "")
        chosen: list[Candidate] = []
        for item in (v.strip() for v in value.split(",")):
            if not item:
                continue
            for c in candidates:
                if (c.endpoint.address == item or c.hostport == item) and c not in chosen:
                    chosen.append(c)
        return chosen


class _Predicate:
    """Keeps candidates with known metrics whose waiting queue is under ``threshold``."""

    name = "low-queue(<threshold)"

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold

    def filter(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[Candidate]:
        t = self.threshold
        return [c for c in candidates if c.metrics is not None and c.metrics.waiting_queue < t]


class DecisionTreeNode:
    """Upstream's ``DecisionTreeFilter``: run ``current``; on a non-empty result continue with
    ``on_success`` (given the result), on an empty one with ``on_failure`` (given the *input*);
    ``then`` is the next node either way when the specific branch is unset."""

    def __init__(self, current: Any, on_success: DecisionTreeNode | None = None,
                 on_failure: DecisionTreeNode | None = None, then: DecisionTreeNode | None = None) -> None:
        self.current = current
        self.on_success = on_success
        self.on_failure = on_failure
        self.then = then

    def run(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[Candidate]:
        filtered = self.current.filter(state, request, candidates)
        if filtered:
            nxt = self.on_success or self.then
            return filtered if nxt is None else nxt.run(state, request, filtered)
        nxt = self.on_failure or self.then
        return filtered if nxt is None else nxt.run(state, request, candidates)


class LowLatencyFilter(Plugin):
    """Upstream's pre-plugin scheduler ("lowLatencyFilter", v0.3.0 era) as one filter: endpoints
    with waiting queue < ``queueingThresholdLoRA`` (128) -> LoRA soft affinity -> least-queue band
    -> least-KV band; if none is under the threshold: least-queue band -> LoRA soft affinity ->
    least-KV band. Pair it with ``random-picker`` (the ``v0.3.0`` preset)."""

    type_name = "low-latency-filter"

    def __init__(self, name: str, rng: Any, queueing_threshold_lora: int = 128,
                 lora_affinity_threshold: float = 0.999) -> None:
        super().__init__(name)
        lora = LoraAffinityFilter("lora-affinity-filter", rng, lora_affinity_threshold)
        least_queue = LeastQueueFilter("least-queue-filter")
        least_kv = LeastKvCacheFilter("least-kv-cache-filter")
        self.tree = DecisionTreeNode(
            _Predicate(queueing_threshold_lora),
            on_success=DecisionTreeNode(lora, then=DecisionTreeNode(least_queue, then=DecisionTreeNode(least_kv))),
            on_failure=DecisionTreeNode(least_queue, then=DecisionTreeNode(lora, then=DecisionTreeNode(least_kv))),
        )

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> LowLatencyFilter:
        check_keys(params, ("queueingThresholdLoRA", "loraAffinityThreshold"))
        return cls(name, handle.rng, int_param(params, "queueingThresholdLoRA", 128, minimum=0),
                   float_param(params, "loraAffinityThreshold", 0.999, low=0.0, high=1.0))

    def filter(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[Candidate]:
        return self.tree.run(state, request, candidates)
