"""LoRA adapter names are learned once per scrape, not at every pick (issue 12's 0.5 ms budget
over 256 endpoints): every caller feeds each scrape to the inflight-load producer (the Director,
the decision replay, the benchmarks, the tests); a pick learns nothing from its candidates.
The per-pick work is counted through the metrics' adapter sets, which record every read."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

from infergate.epp.datastore import Datastore, Endpoint, PodInfo, PoolInfo
from infergate.epp.director import EppDirector
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.scheduling import Candidate, Scheduler, SchedulingRequest, load_preset
from infergate.epp.scheduling.plugins.inflight import InflightLoad, InflightLoadProducer
from infergate.epp.scheduling.plugins.predicted_latency import (
    COSTS_STATE_KEY,
    LoraCost,
    cycle_costs,
    lora_penalties,
    predicted_costs,
)

ENDPOINTS = 16


class Watched(frozenset[str]):
    """A frozenset that counts the reads a pick makes of it (truth test, union, iteration, size)."""

    reads = 0

    def _read(self) -> None:
        Watched.reads += 1

    def __bool__(self) -> bool:
        self._read()
        return frozenset.__len__(self) > 0

    def __or__(self, other: Any) -> frozenset[str]:
        self._read()
        return frozenset(self).union(other)

    def __iter__(self) -> Iterator[str]:
        self._read()
        return frozenset.__iter__(self)

    def __len__(self) -> int:
        self._read()
        return frozenset.__len__(self)


def watched_metrics(active: set[str] | None = None, waiting: set[str] | None = None) -> EndpointMetrics:
    return EndpointMetrics(running=2, waiting_queue=1, active_models=Watched(active or ()),
                           waiting_models=Watched(waiting or ()), max_active_models=2 if active or waiting else 0,
                           update_time=time.monotonic())


def pool(metrics: list[EndpointMetrics | None]) -> list[Candidate]:
    return [Candidate(Endpoint(f"pod-{i}", f"10.0.0.{i + 1}", 8000), m) for i, m in enumerate(metrics)]


def producer_of(scheduler: Scheduler) -> InflightLoadProducer:
    plugin = scheduler.plugins["inflight-load-producer"]
    assert isinstance(plugin, InflightLoadProducer)
    return plugin


def pick(scheduler: Scheduler, rid: str, model: str, cands: list[Candidate]) -> str:
    request = SchedulingRequest(rid, model, "Summarize: " + " ".join(f"w{i}" for i in range(300)))
    result, state = scheduler.schedule(request, cands)
    scheduler.pre_request(state, request, result)
    return result.primary.targets[0].hostport


def test_an_adapter_listed_only_in_a_scrape_is_known() -> None:
    load = InflightLoad()
    load.note_scrape(frozenset({"tweet"}), frozenset({"sql"}))
    assert load.adapters == {"tweet", "sql"}
    # a later scrape that lists none (the adapter is idle everywhere now) forgets nothing
    load.note_scrape(frozenset(), frozenset())
    assert load.adapters == {"tweet", "sql"}
    # picks learn nothing from their candidates: an adapter only a candidate lists (never a fed
    # scrape) stays unknown, and its penalty stays off
    producer = InflightLoadProducer("p")
    producer.scraped("10.0.0.1:8000", watched_metrics({"tweet"}))
    cands = pool([watched_metrics({"other"}), watched_metrics({"tweet"})])
    assert lora_penalties(producer, LoraCost(300.0, 4096.0), SchedulingRequest("r", "other", "x"), cands) == [0.0, 0.0]
    assert lora_penalties(producer, LoraCost(300.0, 4096.0), SchedulingRequest("r", "tweet", "x"), cands) == \
        [300.0, 0.0]


def test_the_director_feeds_every_scrape_to_the_producer() -> None:
    scheduler = load_preset("default", seed=1)
    store = MetricsStore()
    store.update("10.0.0.1:8000", watched_metrics({"early"}))  # scraped before the Director exists
    datastore = Datastore()
    datastore.set_pool(PoolInfo("pool", selector={"app": "vllm"}, target_ports=(8000,)))
    datastore.replace_pods([PodInfo(f"pod-{i}", f"10.0.0.{i + 1}", {"app": "vllm"}) for i in range(2)])
    EppDirector(datastore, scheduler, store)
    load = producer_of(scheduler).load
    assert load.adapters == {"early"}
    store.update("10.0.0.2:8000", watched_metrics({"late"}, {"queued"}))
    assert load.adapters == {"early", "late", "queued"}


def test_a_pool_without_adapters_reads_no_adapter_set_per_pick() -> None:
    scheduler = load_preset("default", seed=1)
    producer = producer_of(scheduler)
    scrapes = [watched_metrics() for _ in range(ENDPOINTS)]
    for m in scrapes:  # as the Director's scrape hook does
        producer.scraped("10.0.0.1:8000", m)
    notes = producer.load.adapter_notes
    Watched.reads = 0
    cands = pool(list(scrapes))
    for i in range(20):
        pick(scheduler, f"r{i}", "base-model", cands)
    assert Watched.reads == 0  # not one read of any candidate's adapter lists, at any pick
    assert producer.load.adapter_notes == notes == 0 and producer.load.adapters == set()


def test_a_pool_with_adapters_builds_no_set_per_pick() -> None:
    scheduler = load_preset("default", seed=1)
    producer = producer_of(scheduler)
    scrapes = [watched_metrics({f"lora-{i % 3}"}) for i in range(ENDPOINTS)]
    for m in scrapes:
        producer.scraped("10.0.0.1:8000", m)
    assert producer.load.adapters == {"lora-0", "lora-1", "lora-2"}
    notes = producer.load.adapter_notes
    Watched.reads = 0
    cands = pool(list(scrapes))
    for i in range(10):  # base-model requests: the known adapters say at once that no term applies
        pick(scheduler, f"b{i}", "base-model", cands)
    assert Watched.reads == 0
    picked = {pick(scheduler, f"a{i}", "lora-1", cands) for i in range(5)}
    assert producer.load.adapter_notes == notes  # no adapter list merged again at a pick
    assert picked  # the adapter requests were placed (their penalty read each candidate's slots)


def test_adapters_come_from_the_fed_scrapes_each_read_once() -> None:
    producer = producer_of(load_preset("default", seed=1))
    lora = LoraCost(300.0, 4096.0)
    first = pool([watched_metrics({"a"}), watched_metrics({"b"}), None])
    # a pick reads no candidate's adapter lists: before any scrape is fed, no adapter is known
    Watched.reads = 0
    assert lora_penalties(producer, lora, SchedulingRequest("r0", "a", "x"), first) == [0.0, 0.0, 0.0]
    assert Watched.reads == 0 and producer.load.adapters == set() and producer.load.adapter_notes == 0
    for c in first:  # the scrapes arrive (the Director's scrape hook)
        if c.metrics is not None:
            producer.scraped(c.hostport, c.metrics)
    assert producer.load.adapter_notes == 2
    assert lora_penalties(producer, lora, SchedulingRequest("r1", "a", "x"), first) == [0.0, 300.0, 300.0]
    for i in range(5):
        lora_penalties(producer, lora, SchedulingRequest(f"r{i + 2}", "base-model", "x"), first)
    assert producer.load.adapter_notes == 2  # no adapter list merged again at a pick
    # a new scrape of one endpoint: only that one is read, and its adapter is known
    rescraped = watched_metrics({"c"}, {"b"})
    second = pool([first[0].metrics, rescraped, None])
    producer.scraped(second[1].hostport, rescraped)
    assert lora_penalties(producer, lora, SchedulingRequest("r7", "c", "x"), second) == [300.0, 0.0, 300.0]
    assert producer.load.adapter_notes == 3 and producer.load.adapters == {"a", "b", "c"}


def test_the_affinity_filter_and_the_scorer_share_one_cost_computation() -> None:
    producer = producer_of(load_preset("default", seed=1))
    producer.scraped("10.0.0.1:8000", watched_metrics({"a"}))
    cands = pool([watched_metrics({"a"}), watched_metrics({"b"}), watched_metrics()])
    request = SchedulingRequest("r", "a", "x" * 4000)
    lora = LoraCost(300.0, 4096.0)
    state: dict[str, Any] = {}
    costs = cycle_costs(producer, 16.0, state, request, cands, lora)
    assert costs == predicted_costs(producer, 16.0, {}, request, cands, lora)
    entry = state[COSTS_STATE_KEY]
    assert cycle_costs(producer, 16.0, state, request, list(cands), lora) == costs  # the same candidates
    assert state[COSTS_STATE_KEY] is entry  # answered from the cycle state
    # different inputs are computed afresh: other settings, a subset of the candidates
    assert cycle_costs(producer, 0.0, state, request, cands, lora) == predicted_costs(producer, 0.0, {}, request,
                                                                                      cands, lora)
    assert state[COSTS_STATE_KEY] is not entry
    assert cycle_costs(producer, 16.0, state, request, cands[:2], lora) == costs[:2]
    assert cycle_costs(producer, 16.0, state, request, cands, LoraCost(0.0, 0.0)) == \
        predicted_costs(producer, 16.0, {}, request, cands, LoraCost(0.0, 0.0))


def reference_view(producer: InflightLoadProducer, candidate: Candidate) -> tuple[int, float]:
    """The reconciliation as written before the single-lookup ``InflightLoad.view``."""
    load = producer.load
    local = load.get(candidate.hostport)
    requests, pending = max(local.requests, candidate.inflight), float(local.pending_prefill_tokens)
    m = candidate.metrics
    if m is not None:
        unknown = max(0, m.running + m.waiting_queue - load.in_flight_at(candidate.hostport, m.update_time))
        requests += unknown
        unknown_waiting = min(m.waiting_queue, unknown)
        pending, _ = load.pending_after_scrape(candidate.hostport, m.update_time, m.waiting_queue - unknown_waiting)
        pending += unknown_waiting * load.mean_uncached_tokens
    return requests, pending


def test_the_single_lookup_view_matches_the_reconciliation() -> None:
    rng = random.Random(5)
    for first_bytes in (False, True):
        producer = InflightLoadProducer("p")
        load = producer.load
        now = 100.0
        endpoints = [Endpoint(f"pod-{i}", f"10.0.0.{i + 1}", 8000) for i in range(12)]
        open_ids: list[str] = []
        for step in range(400):
            now += rng.uniform(0.0, 0.02)
            e = rng.choice(endpoints[:8])  # the last four never get a pick
            if rng.random() < 0.6 or not open_ids:
                rid = f"r{step}"
                load.add(rid, e.hostport, rng.randint(1, 4000), rng.randint(0, 9000), now=now)
                open_ids.append(rid)
            else:
                rid = open_ids.pop(rng.randrange(len(open_ids)))
                if first_bytes and rng.random() < 0.5:
                    load.prefilled(rid)
                else:
                    load.release(rid, now=now)
            metrics = [None if rng.random() < 0.2 else
                       EndpointMetrics(running=rng.randint(-1, 20), waiting_queue=rng.randint(-1, 12),
                                       update_time=now - rng.uniform(0.0, 0.2)) for _ in endpoints]
            for e2, m in zip(endpoints, metrics, strict=True):
                candidate = Candidate(e2, m, rng.randint(0, 6))
                assert producer.view(candidate) == reference_view(producer, candidate)
