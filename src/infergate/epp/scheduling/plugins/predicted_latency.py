"""Token-aware load, predicted time to first token, and prefix affinity until saturated.

All three read the pick-time accounting of an ``inflight-load-producer`` (parameter
``loadProducer``, default ``inflight-load-producer``), so concurrent picks see each other.

- ``token-load-scorer`` (upstream's name and parameter): ``1 - min(1, prompt tokens in
  flight / queueThresholdTokens)``.
- ``predicted-ttft-scorer`` (infergate): the predicted TTFT in prefill tokens on each
  endpoint = pending prefill tokens queued ahead + this request's uncached tokens there
  + ``tokensPerRunningRequest`` x requests in flight (the batch each prefill step shares);
  scored ``(max - cost) / (max - min)`` over the candidates (1.0 for all when equal), so the
  cheapest endpoint wins. Measured in tokens, not seconds, so it needs no model-speed
  calibration: a replica prefills its queue in order at the same rate. With a producer's speed
  factor on (``speedFactorMinSamples`` > 0 or ``prefillRateMinTokens`` > 0; both off by default,
  docs/epp.md "Speed factor"), each endpoint's cost is multiplied by its factor (``EndpointSpeed``:
  how much longer its completed requests took than the fastest endpoint's; ``PrefillRate``: how much
  slower it prefilled while saturated), in the scorer and in the affinity filter alike.
  LoRA adapters (issue 16's ``lora-mix``): when the request's model is an adapter (a name
  a scraped ``vllm:lora_requests_info`` has listed as running or waiting), an
  endpoint where it is not active (scraped running, or picked there by this EPP since the
  scrape into a free slot) pays
  ``loraLoadPenaltyTokens`` if it has a free adapter slot (it loads the adapter) and
  ``loraSlotWaitPenaltyTokens`` if every slot (``max_lora``) is held by running adapters (it
  must wait until one of them drains: vLLM admits no request of a further adapter meanwhile).
  Requests for the base model, and pools without adapters, pay nothing: their costs are as
  before.
- ``prefix-cache-affinity-filter`` (upstream's name; llm-d's "sticky until saturated"):
  keeps only the endpoints holding at least ``affinityThreshold`` of the prompt's prefix,
  unless the best of them has a predicted TTFT (the scorer's cost above, so the recompute of
  the prefix elsewhere is counted) more than ``maxTokensInFlightPenalty`` (τ, in prefill
  tokens: peak prefill throughput x the TTFT penalty worth paying to keep the prefix on
  fewer replicas) above the best other endpoint's; then it keeps every endpoint, the scorers
  pick one, and the prefix now lives on one more replica (the next picks choose between the
  holders: a hot prefix spreads to a second replica, not to all). With
  ``explorationProbability`` it keeps every endpoint anyway. It takes the same
  ``tokensPerRunningRequest``, ``loraLoadPenaltyTokens`` and ``loraSlotWaitPenaltyTokens``
  (set them alike in both plugins).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infergate.epp.scheduling.framework import Candidate, CycleState, Plugin, PluginHandle, SchedulingRequest
from infergate.epp.scheduling.plugins.inflight import InflightLoadProducer, find_producer
from infergate.epp.scheduling.plugins.params import check_keys, float_param, int_param, str_param

PRODUCER = InflightLoadProducer.type_name
DEFAULT_TOKENS_PER_RUNNING = 16.0
DEFAULT_AFFINITY_PENALTY_TOKENS = 2048  # issue 16: 8,192 held a saturated Zipf prefix ~1 s too long; 1,024 (before
# the first-token counts made the pending prefill exact) spread it too soon (docs/epp.md, "Scheduling v2")
# an adapter load (the a100 profiles' 0.04 s) in prefill tokens (0.000135 s each)
DEFAULT_LORA_LOAD_PENALTY_TOKENS = 300
# waiting for an adapter slot: until a running adapter's requests drain (issue 16's lora-mix,
# 64 output tokens: a decode of ~1 s); docs/epp.md has the replay's numbers
DEFAULT_LORA_SLOT_WAIT_PENALTY_TOKENS = 4096


@dataclass(frozen=True)
class LoraCost:
    """The adapter terms of the predicted TTFT, in prefill tokens (see the module doc)."""

    load_tokens: float = DEFAULT_LORA_LOAD_PENALTY_TOKENS
    slot_wait_tokens: float = DEFAULT_LORA_SLOT_WAIT_PENALTY_TOKENS

    PARAMS = ("loraLoadPenaltyTokens", "loraSlotWaitPenaltyTokens")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LoraCost:
        return cls(float_param(params, "loraLoadPenaltyTokens", DEFAULT_LORA_LOAD_PENALTY_TOKENS, low=0.0, high=1e7),
                   float_param(params, "loraSlotWaitPenaltyTokens", DEFAULT_LORA_SLOT_WAIT_PENALTY_TOKENS, low=0.0,
                               high=1e7))


NO_LORA_COST = LoraCost(0.0, 0.0)


class _UsesLoad(Plugin):
    def __init__(self, name: str, producer: str = PRODUCER) -> None:
        super().__init__(name)
        self.producer_name = producer
        self._producer: InflightLoadProducer | None = None

    def resolve(self, handle: PluginHandle) -> None:
        self._producer = find_producer(handle, self.producer_name, self.type_name)

    @property
    def producer(self) -> InflightLoadProducer:
        if self._producer is None:
            raise RuntimeError(f"{self.name}: resolve() was not called")
        return self._producer


class TokenLoadScorer(_UsesLoad):
    type_name = "token-load-scorer"

    def __init__(self, name: str, producer: str = PRODUCER, threshold: int = 4_194_304) -> None:
        super().__init__(name, producer)
        self.threshold = threshold

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> TokenLoadScorer:
        check_keys(params, ("loadProducer", "queueThresholdTokens"))
        return cls(name, str_param(params, "loadProducer", PRODUCER),
                   int_param(params, "queueThresholdTokens", 4_194_304, minimum=1))

    def score(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[float]:
        load, limit = self.producer.load, self.threshold
        return [1.0 - min(1.0, load.get(c.hostport).prompt_tokens / limit) for c in candidates]


def lora_penalties(producer: InflightLoadProducer, lora: LoraCost, request: SchedulingRequest,
                   candidates: list[Candidate]) -> list[float]:
    """Per candidate: 0 where the request's adapter is active, ``lora.load_tokens`` where a slot is
    free, ``lora.slot_wait_tokens`` where every slot is held; all 0 when the model is no known adapter.

    The known adapters are learned once per scrape (``InflightLoad.note_scrape``: every caller
    feeds the producer its scrapes): a pick for the base model or a pool without adapters does no
    per-candidate work here."""
    model = request.target_model
    load = producer.load
    adapters = load.adapters
    if model not in adapters or not (lora.load_tokens or lora.slot_wait_tokens):
        return [0.0] * len(candidates)
    penalties: list[float] = []
    for c in candidates:
        m = c.metrics
        if m is None:
            penalties.append(lora.load_tokens)
            continue
        active: frozenset[str] | set[str] = m.active_models
        # this EPP's picks since the scrape: a new adapter takes a free slot (a waiting one had none)
        picked_since = load.models_picked_since(c.hostport, m.update_time)
        if picked_since:  # a copy only when there is something to add to the scraped set
            active = set(active)
            for picked in picked_since:
                if (picked in adapters and picked not in active and picked not in m.waiting_models
                        and len(active) < m.max_active_models):
                    active.add(picked)
        if model in active:
            penalties.append(0.0)
        elif m.max_active_models > 0 and len(active) >= m.max_active_models:
            penalties.append(lora.slot_wait_tokens)
        else:
            penalties.append(lora.load_tokens)
    return penalties


def predicted_costs(producer: InflightLoadProducer, per_running: float, state: CycleState,
                    request: SchedulingRequest, candidates: list[Candidate],
                    lora: LoraCost = NO_LORA_COST) -> list[float]:
    """Predicted TTFT per candidate in prefill tokens (see the module doc)."""
    uncached = producer.uncached_for(state, request, candidates)
    adapter = lora_penalties(producer, lora, request, candidates)
    costs: list[float] = []
    for c, own, extra in zip(candidates, uncached, adapter, strict=True):
        requests, pending = producer.view(c)
        costs.append(pending + own + per_running * requests + extra)
    if producer.load.speed_enabled:  # off by default: no per-candidate call on the hot path
        costs = [cost * producer.speed_factor(c) for cost, c in zip(costs, candidates, strict=True)]
    return costs


COSTS_STATE_KEY = "predicted-costs"  # CycleState: the last ``cycle_costs`` computation of the cycle


@dataclass(frozen=True)
class _CycleCosts:
    producer: InflightLoadProducer
    per_running: float
    lora: LoraCost
    request: SchedulingRequest
    candidates: tuple[Candidate, ...]
    costs: tuple[float, ...]

    def answers(self, producer: InflightLoadProducer, per_running: float, lora: LoraCost,
                request: SchedulingRequest, candidates: list[Candidate]) -> bool:
        return (self.producer is producer and self.request is request and self.per_running == per_running
                and self.lora == lora and len(self.candidates) == len(candidates)
                and all(map(operator.is_, self.candidates, candidates)))


def cycle_costs(producer: InflightLoadProducer, per_running: float, state: CycleState,
                request: SchedulingRequest, candidates: list[Candidate], lora: LoraCost = NO_LORA_COST) -> list[float]:
    """``predicted_costs``, computed once per scheduling cycle for the same inputs: the affinity
    filter computes the costs of every candidate, and when it keeps them all (no holder, or the
    holders saturated) the scorer asks for the same ones (same candidate objects, producer,
    settings and request; nothing changes the producer's accounting within a cycle)."""
    entry = state.get(COSTS_STATE_KEY)
    if isinstance(entry, _CycleCosts) and entry.answers(producer, per_running, lora, request, candidates):
        return list(entry.costs)
    costs = predicted_costs(producer, per_running, state, request, candidates, lora)
    state[COSTS_STATE_KEY] = _CycleCosts(producer, per_running, lora, request, tuple(candidates), tuple(costs))
    return costs


class PredictedTtftScorer(_UsesLoad):
    type_name = "predicted-ttft-scorer"

    def __init__(self, name: str, producer: str = PRODUCER, per_running: float = DEFAULT_TOKENS_PER_RUNNING,
                 lora: LoraCost | None = None) -> None:
        super().__init__(name, producer)
        self.per_running = per_running
        self.lora = LoraCost() if lora is None else lora

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> PredictedTtftScorer:
        check_keys(params, ("loadProducer", "tokensPerRunningRequest", *LoraCost.PARAMS))
        return cls(name, str_param(params, "loadProducer", PRODUCER),
                   float_param(params, "tokensPerRunningRequest", DEFAULT_TOKENS_PER_RUNNING, low=0.0,
                               high=1e6), LoraCost.from_params(params))

    def costs(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[float]:
        return cycle_costs(self.producer, self.per_running, state, request, candidates, self.lora)

    def score(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[float]:
        costs = self.costs(state, request, candidates)
        if not costs:
            return []
        low, high = min(costs), max(costs)
        if high == low:
            return [1.0] * len(costs)
        span = high - low
        return [(high - c) / span for c in costs]


class PrefixCacheAffinityFilter(_UsesLoad):
    type_name = "prefix-cache-affinity-filter"

    def __init__(self, name: str, rng: Any, producer: str = PRODUCER, threshold: float = 0.5,
                 exploration: float = 0.0, penalty_tokens: int = DEFAULT_AFFINITY_PENALTY_TOKENS,
                 per_running: float = DEFAULT_TOKENS_PER_RUNNING, lora: LoraCost | None = None) -> None:
        super().__init__(name, producer)
        self.lora = LoraCost() if lora is None else lora
        self.rng = rng
        self.threshold = threshold
        self.exploration = exploration
        self.penalty_tokens = penalty_tokens
        self.per_running = per_running

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> PrefixCacheAffinityFilter:
        check_keys(params, ("loadProducer", "affinityThreshold", "explorationProbability",
                            "maxTokensInFlightPenalty", "tokensPerRunningRequest", *LoraCost.PARAMS))
        return cls(name, handle.rng, str_param(params, "loadProducer", PRODUCER),
                   float_param(params, "affinityThreshold", 0.5, low=0.0, high=1.0),
                   float_param(params, "explorationProbability", 0.0, low=0.0, high=1.0),
                   int_param(params, "maxTokensInFlightPenalty", DEFAULT_AFFINITY_PENALTY_TOKENS, minimum=0),
                   float_param(params, "tokensPerRunningRequest", DEFAULT_TOKENS_PER_RUNNING, low=0.0, high=1e6),
                   LoraCost.from_params(params))

    def filter(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[Candidate]:
        producer = self.producer
        if producer.prefix is None or len(candidates) < 2:
            return candidates
        if self.exploration and self.rng.random() < self.exploration:
            return candidates
        hashes, matched = producer.prefix.match(state, request)
        if not hashes or not matched:
            return candidates
        # hashes[0] is the model's seed, held by every endpoint that served the model: only
        # the prompt's own blocks count (else a one-block prompt would be "half cached" anywhere)
        blocks = len(hashes) - 1
        if blocks <= 0:
            return candidates
        sticky: list[Candidate] = []
        others: list[float] = []
        costs = cycle_costs(producer, self.per_running, state, request, candidates, self.lora)
        best_sticky = float("inf")
        for c, cost in zip(candidates, costs, strict=True):
            held = matched.get(c.hostport, 0) - 1
            if held > 0 and held / blocks >= self.threshold:
                sticky.append(c)
                best_sticky = min(best_sticky, cost)
            else:
                others.append(cost)
        if not sticky or not others:
            return candidates
        # saturated: even after recomputing the prefix, another endpoint would answer more than
        # τ sooner; let the scorers spread the prefix to one more replica
        if best_sticky - min(others) > self.penalty_tokens:
            return candidates
        return sticky
