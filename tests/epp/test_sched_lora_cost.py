"""The LoRA term of the predicted TTFT (predicted-ttft-scorer and prefix-cache-affinity-filter):
an endpoint where the request's adapter is not active pays a load, one whose adapter slots are
all held pays a slot wait; the base model and pools without adapters pay nothing."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from infergate.epp.datastore import Endpoint
from infergate.epp.metrics_scraper import EndpointMetrics
from infergate.epp.scheduling import (
    Candidate,
    ConfigError,
    Scheduler,
    SchedulingRequest,
    load_config_text,
    load_preset,
)
from infergate.epp.scheduling.plugins.inflight import InflightLoadProducer
from infergate.epp.scheduling.plugins.predicted_latency import (
    DEFAULT_LORA_LOAD_PENALTY_TOKENS,
    DEFAULT_LORA_SLOT_WAIT_PENALTY_TOKENS,
    NO_LORA_COST,
    LoraCost,
    PredictedTtftScorer,
    PrefixCacheAffinityFilter,
    lora_penalties,
    predicted_costs,
)

IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
HOSTS = [f"{ip}:8000" for ip in IPS]
TASK = "Adapter task. " + " ".join(f"step{i}" for i in range(800))  # ~1,300 tokens


def lora_metrics(active: set[str], waiting: frozenset[str] = frozenset(), max_loras: int = 2,
                 at: float | None = None) -> EndpointMetrics:
    return EndpointMetrics(active_models=frozenset(active), waiting_models=frozenset(waiting),
                           max_active_models=max_loras, update_time=time.monotonic() if at is None else at)


def candidates(metrics: Sequence[EndpointMetrics | None]) -> list[Candidate]:
    return [Candidate(Endpoint(f"pod-{i}", ip, 8000), m) for i, (ip, m) in enumerate(zip(IPS, metrics, strict=True))]


def producer_of(scheduler: Scheduler) -> InflightLoadProducer:
    plugin = scheduler.plugins["inflight-load-producer"]
    assert isinstance(plugin, InflightLoadProducer)
    return plugin


def scraped(producer: InflightLoadProducer, cands: list[Candidate]) -> list[Candidate]:
    """The candidates' metrics arrive as scrapes (the Director's scrape hook): their adapters become known."""
    for c in cands:
        if c.metrics is not None:
            producer.scraped(c.hostport, c.metrics)
    return cands


def pick(scheduler: Scheduler, rid: str, model: str, text: str, cands: list[Candidate]) -> str:
    sreq = SchedulingRequest(rid, model, text)
    result, state = scheduler.schedule(sreq, cands)
    scheduler.pre_request(state, sreq, result)
    return result.primary.targets[0].hostport


def test_penalties_active_free_slot_and_full() -> None:
    producer = producer_of(load_preset("default", seed=1))
    lora = LoraCost(300.0, 4096.0)
    cands = scraped(producer, candidates([lora_metrics({"a"}), lora_metrics({"b"}),
                                          lora_metrics({"b", "c"}, frozenset({"a"}))]))
    # active on 0; a free slot on 1 (load it); 2's slots are held by b and c (a waits there)
    assert lora_penalties(producer, lora, SchedulingRequest("r", "a", "x"), cands) == [0.0, 300.0, 4096.0]
    # no metrics yet: a load, never a slot wait
    assert lora_penalties(producer, lora, SchedulingRequest("r", "b", "x"),
                          candidates([None, lora_metrics({"b"}), lora_metrics({"a"})])) == [300.0, 0.0, 300.0]


def test_base_model_and_pools_without_adapters_pay_nothing() -> None:
    producer = producer_of(load_preset("default", seed=1))
    lora = LoraCost()
    full = scraped(producer, candidates([lora_metrics({"a", "b"}), lora_metrics({"c", "d"}), lora_metrics({"a", "c"})]))
    assert producer.load.adapters == {"a", "b", "c", "d"}
    assert lora_penalties(producer, lora, SchedulingRequest("r", "base-model", "x"), full) == [0.0] * 3
    plain = [EndpointMetrics(waiting_queue=2, running=3), None, EndpointMetrics()]
    request = SchedulingRequest("r", "m", TASK)
    assert lora_penalties(producer, lora, request, candidates(plain)) == [0.0] * 3
    assert predicted_costs(producer, 16.0, {}, request, candidates(plain), lora) == \
        predicted_costs(producer, 16.0, {}, request, candidates(plain), NO_LORA_COST)


def test_an_adapter_idle_everywhere_now_is_still_an_adapter() -> None:
    # a cold adapter (a few % of the traffic) is often running nowhere at the moment of a pick:
    # it was sent to a replica whose two slots were busy and waited there (issue 16's lora-mix)
    producer = producer_of(load_preset("default", seed=1))
    lora = LoraCost(300.0, 4096.0)
    scraped(producer, candidates([lora_metrics({"cold"}), lora_metrics({"b"}), lora_metrics({"c"})]))
    now = scraped(producer, candidates([lora_metrics({"a", "b"}), lora_metrics({"b"}), lora_metrics({"c", "d"})]))
    assert lora_penalties(producer, lora, SchedulingRequest("r", "cold", "x"), now) == \
        [4096.0, 300.0, 4096.0]


def test_picks_since_the_scrape_take_free_slots() -> None:
    scheduler = load_preset("default", seed=1)
    producer = producer_of(scheduler)
    lora = LoraCost(300.0, 4096.0)
    scraped_at = time.monotonic() - 1.0
    cands = candidates([lora_metrics({"a"}, at=scraped_at), lora_metrics({"b", "c"}, at=scraped_at),
                        lora_metrics({"b", "c"}, at=scraped_at)])
    producer.load.note_adapters(frozenset({"d", "e"}))  # adapters an earlier scrape listed
    producer.load.add("r1", HOSTS[0], 100, 100, model="d")  # after the scrape: d loads into 0's free slot
    assert lora_penalties(producer, lora, SchedulingRequest("r2", "d", "x"), cands) == [0.0, 4096.0, 4096.0]
    assert lora_penalties(producer, lora, SchedulingRequest("r3", "e", "x"), cands)[0] == 4096.0
    producer.load.release("r1")
    assert lora_penalties(producer, lora, SchedulingRequest("r4", "e", "x"), cands)[0] == 300.0


def test_the_costs_carry_the_penalty() -> None:
    scheduler = load_preset("default", seed=1)
    scorer = scheduler.plugins["predicted-ttft-scorer"]
    assert isinstance(scorer, PredictedTtftScorer)
    assert scorer.lora == LoraCost(DEFAULT_LORA_LOAD_PENALTY_TOKENS, DEFAULT_LORA_SLOT_WAIT_PENALTY_TOKENS)
    cands = scraped(producer_of(scheduler), candidates([lora_metrics({"a"}), lora_metrics({"b"}),
                                                        lora_metrics({"b", "c"})]))
    costs = scorer.costs({}, SchedulingRequest("r", "a", TASK), cands)
    assert costs[1] - costs[0] == pytest.approx(DEFAULT_LORA_LOAD_PENALTY_TOKENS)
    assert costs[2] - costs[0] == pytest.approx(DEFAULT_LORA_SLOT_WAIT_PENALTY_TOKENS)
    assert scorer.score({}, SchedulingRequest("r", "a", TASK), cands)[0] == 1.0


def test_default_moves_an_adapter_off_a_holder_whose_slots_are_taken() -> None:
    # issue 16's lora-mix: the adapter's task prompt was cached on a replica whose two slots other
    # adapters now hold; prefix affinity kept every request there, each waiting for a slot
    scheduler = load_preset("default", seed=1)
    producer = producer_of(scheduler)
    warm = scraped(producer, candidates([lora_metrics({"a"}), lora_metrics(set()), lora_metrics(set())]))
    assert pick(scheduler, "w", "a", TASK + " Q0?", warm[:1]) == HOSTS[0]
    scheduler.response_started("w")
    scheduler.request_done("w", True)
    later = scraped(producer, candidates([lora_metrics({"b", "c"}, frozenset({"a"})), lora_metrics({"d"}),
                                          lora_metrics({"d"})]))
    assert pick(scheduler, "q", "a", TASK + " Q1?", later) != HOSTS[0]
    # with its slot still held, the holder keeps the adapter's traffic (its prefix is cached there)
    held = scraped(producer, candidates([lora_metrics({"a", "c"}), lora_metrics({"d"}), lora_metrics({"d"})]))
    assert pick(scheduler, "q2", "a", TASK + " Q2?", held) == HOSTS[0]


@pytest.mark.parametrize("plugin", ["predicted-ttft-scorer", "prefix-cache-affinity-filter"])
def test_lora_parameters_are_read_and_checked(plugin: str) -> None:
    def config(params: str) -> str:
        return f"""
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: inflight-load-producer
- type: {plugin}
  parameters: {params}
"""
    loaded = load_config_text(config("{loraLoadPenaltyTokens: 10, loraSlotWaitPenaltyTokens: 20}"), seed=1)
    target = loaded.plugins[plugin]
    assert isinstance(target, PredictedTtftScorer | PrefixCacheAffinityFilter)
    assert target.lora == LoraCost(10.0, 20.0)
    with pytest.raises(ConfigError, match="loraSlotWaitPenaltyTokens"):
        load_config_text(config("{loraSlotWaitPenaltyTokens: -1}"), seed=1)
    with pytest.raises(ConfigError, match="loraLoadPenaltyTokens"):
        load_config_text(config("{loraLoadPenaltyTokens: fast}"), seed=1)
