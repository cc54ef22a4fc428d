"""Scheduling v2: pick-time accounting (inflight-load-producer), token-load-scorer,
predicted-ttft-scorer, prefix-cache-affinity-filter, the predicted-latency preset, and the
Director's release hooks."""

from __future__ import annotations

import time

import pytest

from infergate.epp.contract import InferenceRequest
from infergate.epp.datastore import Datastore, Endpoint, PodInfo, PoolInfo
from infergate.epp.director import DirectorConfig, EppDirector
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.scheduling import (
    Candidate,
    ConfigError,
    Scheduler,
    SchedulingRequest,
    load_config_text,
    load_preset,
)
from infergate.epp.scheduling.config import PRESETS, UPSTREAM_V1_DEFAULT
from infergate.epp.scheduling.plugins.inflight import InflightLoad, InflightLoadProducer
from infergate.epp.scheduling.plugins.predicted_latency import (
    PredictedTtftScorer,
    PrefixCacheAffinityFilter,
    TokenLoadScorer,
)

IPS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
HOSTS = [f"{ip}:8000" for ip in IPS]
SYSTEM = {g: f"System prompt {g}. " + " ".join(f"word{g}x{i}" for i in range(600)) for g in range(4)}  # ~8 KB


def prompt(group: int, n: int) -> str:
    return SYSTEM[group] + f"\nQuestion {n}: why?\nAnswer:"


def candidates(metrics: dict[str, EndpointMetrics] | None = None) -> list[Candidate]:
    metrics = metrics or {}
    return [Candidate(Endpoint(f"pod-{i}", ip, 8000), metrics.get(h)) for i, (ip, h) in enumerate(zip(IPS, HOSTS, strict=True))]


def pick(scheduler: Scheduler, rid: str, text: str, cands: list[Candidate] | None = None) -> str:
    sreq = SchedulingRequest(rid, "m", text)
    result, state = scheduler.schedule(sreq, cands or candidates())
    scheduler.pre_request(state, sreq, result)
    return result.primary.targets[0].hostport


def producer_of(scheduler: Scheduler) -> InflightLoadProducer:
    plugin = scheduler.plugins["inflight-load-producer"]
    assert isinstance(plugin, InflightLoadProducer)
    return plugin


# ---- the accounting ---------------------------------------------------------------------

def test_inflight_load_counts_releases_and_survives_unknown_ids() -> None:
    load = InflightLoad()
    load.add("a", "h1", prompt_tokens=3000, uncached_tokens=3000)
    load.add("b", "h1", prompt_tokens=3000, uncached_tokens=10)
    assert (load.get("h1").requests, load.get("h1").prompt_tokens, load.get("h1").pending_prefill_tokens) == \
        (2, 6000, 3010)
    load.prefilled("a")  # first bytes of a: its prefill is done, the request still runs
    assert (load.get("h1").requests, load.get("h1").pending_prefill_tokens) == (2, 10)
    load.prefilled("a")  # once only
    assert load.get("h1").pending_prefill_tokens == 10
    load.release("b")  # ended before its first bytes (error, abort): everything of it goes
    assert (load.get("h1").requests, load.get("h1").prompt_tokens, load.get("h1").pending_prefill_tokens) == \
        (1, 3000, 0)
    load.release("a")
    load.release("a")
    load.release("never")
    assert load.get("h1").requests == 0 and len(load) == 0


def test_reused_request_id_restarts_its_accounting() -> None:
    load = InflightLoad()
    load.add("a", "h1", 100, 100)
    load.add("a", "h2", 50, 50)
    assert load.get("h1").requests == 0 and load.get("h2").requests == 1


def test_concurrent_picks_see_each_other_before_any_scrape() -> None:
    # three different cold prompts arrive at once: metrics are those of one (old) scrape that
    # says every endpoint is idle; pick-time accounting spreads them over the three endpoints
    scheduler = load_preset("predicted-latency", seed=3)
    scraped = {h: EndpointMetrics(update_time=time.monotonic()) for h in HOSTS}
    picks = [pick(scheduler, f"r{g}", prompt(g, 0), candidates(scraped)) for g in range(3)]
    assert sorted(picks) == sorted(HOSTS)
    producer = producer_of(scheduler)
    assert all(producer.load.get(h).requests == 1 for h in HOSTS)


def test_upstream_default_herds_on_the_same_stale_snapshot() -> None:
    # the contrast: queue + kv + prefix scorers see the same snapshot for the three picks
    scheduler = load_preset("upstream-v1.0", seed=3)
    scraped = {HOSTS[0]: EndpointMetrics(update_time=time.monotonic()),
               HOSTS[1]: EndpointMetrics(waiting_queue=1, update_time=time.monotonic()),
               HOSTS[2]: EndpointMetrics(waiting_queue=1, update_time=time.monotonic())}
    picks = [pick(scheduler, f"r{g}", prompt(g, 0), candidates(scraped)) for g in range(3)]
    assert picks == [HOSTS[0]] * 3


def test_release_on_completion_and_on_abort_through_the_scheduler() -> None:
    scheduler = load_preset("predicted-latency", seed=1)
    host = pick(scheduler, "r1", prompt(0, 1))
    pick(scheduler, "r2", prompt(0, 2))
    load = producer_of(scheduler).load
    assert sum(load.get(h).requests for h in HOSTS) == 2
    scheduler.response_started("r1")
    scheduler.request_done("r1", True)
    scheduler.request_done("r2", False)  # error or client abort
    assert all(load.get(h).requests == 0 and load.get(h).pending_prefill_tokens == 0 for h in HOSTS)
    assert host in HOSTS


def test_uncached_tokens_follow_the_prefix_index() -> None:
    scheduler = load_preset("predicted-latency", seed=1)
    host = pick(scheduler, "r1", prompt(0, 1))
    producer = producer_of(scheduler)
    first = producer.load.get(host).pending_prefill_tokens
    assert first == producer.prompt_tokens(SchedulingRequest("x", "m", prompt(0, 1)))
    scheduler.response_started("r1")
    assert pick(scheduler, "r2", prompt(0, 2)) == host  # affinity: the prefix is there
    # only the question (and the partial last block) is left to compute on that endpoint
    assert 0 < producer.load.get(host).pending_prefill_tokens < 40


# ---- predicted TTFT ---------------------------------------------------------------------

def scorer_setup(per_running: float = 16.0) -> tuple[Scheduler, PredictedTtftScorer]:
    scheduler = load_config_text(f"""
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-scorer
- type: inflight-load-producer
- type: predicted-ttft-scorer
  parameters: {{tokensPerRunningRequest: {per_running}}}
schedulingProfiles:
- name: default
  plugins:
  - {{pluginRef: prefix-cache-scorer, weight: 0}}
  - pluginRef: predicted-ttft-scorer
""", seed=1)
    scorer = scheduler.plugins["predicted-ttft-scorer"]
    assert isinstance(scorer, PredictedTtftScorer)
    return scheduler, scorer


def test_predicted_ttft_orders_by_queue_ahead_and_uncached_tokens() -> None:
    scheduler, scorer = scorer_setup()
    load = producer_of(scheduler).load
    holder = pick(scheduler, "warm", prompt(0, 0))
    scheduler.response_started("warm")
    scheduler.request_done("warm", True)
    others = [h for h in HOSTS if h != holder]
    # cached prefix, nothing queued: cheapest; a cold idle endpoint pays the whole prompt
    cands = candidates()
    costs = scorer.costs({}, SchedulingRequest("q", "m", prompt(0, 1)), cands)
    by_host = dict(zip(HOSTS, costs, strict=True))
    assert by_host[holder] < by_host[others[0]] == by_host[others[1]]
    # a queue of uncached prefill ahead on the holder makes a cold endpoint cheaper
    load.add("big", holder, 20_000, 20_000)
    costs = scorer.costs({}, SchedulingRequest("q2", "m", prompt(0, 2)), candidates())
    by_host = dict(zip(HOSTS, costs, strict=True))
    assert by_host[holder] > by_host[others[0]]
    # the running batch counts, less than queued prefill: 10 running requests = 160 tokens
    load.release("big")
    load.add("b1", others[0], 100, 0)
    for i in range(9):
        load.add(f"run{i}", others[0], 100, 0)
    costs = scorer.costs({}, SchedulingRequest("q3", "m", prompt(1, 0)), candidates())
    by_host = dict(zip(HOSTS, costs, strict=True))
    assert by_host[others[0]] - by_host[others[1]] == pytest.approx(160.0)
    scores = scorer.score({}, SchedulingRequest("q4", "m", prompt(1, 0)), candidates())
    assert scores[HOSTS.index(others[0])] == 0.0 and max(scores) == 1.0


def test_predicted_ttft_reconciles_with_scraped_metrics() -> None:
    # another router's traffic is only in the scrape: its waiting queue counts as pending
    # prefill (x the mean uncached tokens of this EPP's picks), its batch as running
    scheduler, scorer = scorer_setup()
    pick(scheduler, "seed", prompt(3, 0))  # sets the mean uncached tokens
    scheduler.request_done("seed", True)
    now = time.monotonic()
    scraped = {HOSTS[0]: EndpointMetrics(waiting_queue=4, running=8, update_time=now),
               HOSTS[1]: EndpointMetrics(update_time=now), HOSTS[2]: EndpointMetrics(running=8, update_time=now)}
    costs = scorer.costs({}, SchedulingRequest("q", "m", prompt(2, 0)), candidates(scraped))
    assert costs[1] < costs[2] < costs[0]


def test_scraped_queue_of_own_requests_is_not_counted_twice() -> None:
    # the holder's waiting queue in the scrape is this EPP's own cheap (cached) picks, already in
    # its pending prefill: counting them again at the mean uncached tokens (high while the pool
    # warms up) made the holder look saturated and gave its prefix away (issue 16's closed loop)
    scheduler = load_preset("predicted-latency", seed=1)
    producer = producer_of(scheduler)
    holder = pick(scheduler, "r0", prompt(0, 0))
    scheduler.response_started("r0")
    for i in range(5):
        assert pick(scheduler, f"r{i + 1}", prompt(0, i + 1)) == holder
    producer.load.mean_uncached_tokens = 3000.0  # cold picks elsewhere
    now = time.monotonic()
    scraped = {h: EndpointMetrics(update_time=now) for h in HOSTS}
    scraped[holder] = EndpointMetrics(waiting_queue=5, running=1, update_time=now)
    requests, pending = producer.view(next(c for c in candidates(scraped) if c.hostport == holder))
    assert requests == 6 and pending == producer.load.get(holder).pending_prefill_tokens < 100
    assert pick(scheduler, "next", prompt(0, 9), candidates(scraped)) == holder
    # requests this EPP did not send (another router's: 9 scraped, 6 local) still count, at the mean
    scheduler.request_done("next", True)
    producer.load.mean_uncached_tokens = 3000.0
    scraped[holder] = EndpointMetrics(waiting_queue=5, running=4, update_time=now)
    requests, pending = producer.view(next(c for c in candidates(scraped) if c.hostport == holder))
    assert requests == 9 and pending == producer.load.get(holder).pending_prefill_tokens + 3 * 3000.0


def test_requests_that_ended_after_the_scrape_are_not_another_routers_queue() -> None:
    # issue 16 (Zipf): a scrape still shows the requests that ended after it was taken; compared
    # with today's in-flight count they looked like another router's waiting requests, each
    # worth the mean uncached tokens (~3,000), on exactly the busy replicas
    scheduler = load_preset("predicted-latency", seed=1)
    producer = producer_of(scheduler)
    load = producer.load
    holder = HOSTS[0]
    load.add("a", holder, 3000, 0)
    load.add("b", holder, 3000, 500)
    load.add("c", holder, 3000, 500)
    load.prefilled("a")
    scrape = EndpointMetrics(waiting_queue=2, running=1, update_time=time.monotonic())  # a runs, b, c wait
    time.sleep(0.002)
    load.release("a")  # ends after the scrape
    load.mean_uncached_tokens = 3000.0
    assert producer.view(Candidate(Endpoint("pod-0", IPS[0], 8000), scrape)) == (2, 1000.0)
    # a pick after the scrape is not in it; another router's two waiting requests are, at the mean
    load.add("d", holder, 3000, 500)
    load.mean_uncached_tokens = 3000.0
    scrape = EndpointMetrics(waiting_queue=4, running=1, update_time=scrape.update_time)
    assert producer.view(Candidate(Endpoint("pod-0", IPS[0], 8000), scrape)) == (5, 1500.0 + 2 * 3000.0)


def test_without_first_bytes_the_scrape_tells_which_requests_are_still_queued() -> None:
    # issue 16 (Zipf): the production data plane does not send response bodies to the EPP
    # (ext_proc response_body_mode NONE), so no first bytes come back and every request's
    # prefill stayed pending until its end, through its whole decode: a busy replica looked
    # several prompts more loaded than it was. A scrape shows how many requests wait in the
    # server's queue; it admits in order, so of this EPP's picks before the scrape only the
    # newest that many are still queued, and the picks since are not in the scrape yet
    scheduler = load_preset("predicted-latency", seed=1)
    producer = producer_of(scheduler)
    load = producer.load
    holder = HOSTS[0]
    load.add("a", holder, 3000, 3000)
    load.add("b", holder, 3000, 2000)
    load.add("c", holder, 3000, 1000)
    scrape = EndpointMetrics(waiting_queue=1, running=2, update_time=time.monotonic())  # a, b admitted
    time.sleep(0.002)
    load.add("d", holder, 3000, 500)  # after the scrape
    assert producer.view(Candidate(Endpoint("pod-0", IPS[0], 8000), scrape)) == (4, 1000.0 + 500.0)
    # without a scrape, nothing tells: every request without first bytes is pending
    assert producer.view(Candidate(Endpoint("pod-0", IPS[0], 8000), None)) == (4, 6500.0)
    # an admitted prompt longer than one step's budget (8,192 tokens) is prefilled over several
    # steps: it stays pending (a 16k-token document would otherwise look done at admission)
    load.add("long", HOSTS[1], 16_000, 16_000)
    scrape = EndpointMetrics(waiting_queue=0, running=1, update_time=time.monotonic())
    assert producer.view(Candidate(Endpoint("pod-1", IPS[1], 8000), scrape)) == (1, 16_000.0)


# ---- affinity until saturated ------------------------------------------------------------

def test_affinity_kept_then_spread_to_one_more_replica_at_saturation() -> None:
    scheduler = load_config_text("""
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-scorer
- type: inflight-load-producer
- type: prefix-cache-affinity-filter
  parameters: {maxTokensInFlightPenalty: 4000}
- type: predicted-ttft-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-affinity-filter
  - {pluginRef: prefix-cache-scorer, weight: 0}
  - pluginRef: predicted-ttft-scorer
""", seed=5)
    load = producer_of(scheduler).load
    first = pick(scheduler, "r0", prompt(0, 0))
    # concurrent requests of the same prefix stay on its holder while its queue ahead is
    # under the penalty, even though a cold replica would be a little faster for each
    stayed = [pick(scheduler, f"s{i}", prompt(0, i + 1)) for i in range(3)]
    assert stayed == [first] * 3
    # the holder saturates (another big prefill queued there): the prefix spreads, once
    load.add("hog", first, 8000, 8000)
    second = pick(scheduler, "spill", prompt(0, 10))
    assert second != first
    # now two replicas hold it: the next picks go to one of them, never to the third
    third = next(h for h in HOSTS if h not in (first, second))
    later = {pick(scheduler, f"t{i}", prompt(0, 20 + i)) for i in range(4)}
    assert third not in later and second in later


def affinity_setup(penalty: int) -> tuple[Scheduler, PrefixCacheAffinityFilter]:
    scheduler = load_config_text(f"""
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-scorer
- type: inflight-load-producer
- type: prefix-cache-affinity-filter
  parameters: {{maxTokensInFlightPenalty: {penalty}}}
- type: predicted-ttft-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-affinity-filter
  - {{pluginRef: prefix-cache-scorer, weight: 0}}
  - pluginRef: predicted-ttft-scorer
""", seed=3)
    flt = scheduler.plugins["prefix-cache-affinity-filter"]
    assert isinstance(flt, PrefixCacheAffinityFilter)
    return scheduler, flt


def test_affinity_weighs_the_holders_wait_against_recomputing_the_prefix_elsewhere() -> None:
    # issue 16 (Zipf): saturation compared queued prefill only, so the prefix a request would
    # recompute elsewhere was ignored. Leaving costs that recompute: the holder is saturated when
    # its predicted TTFT exceeds the best other endpoint's (which includes the recompute) by τ
    scheduler, flt = affinity_setup(1000)
    producer = producer_of(scheduler)
    holder = pick(scheduler, "warm", prompt(0, 0))
    scheduler.response_started("warm")
    scheduler.request_done("warm", True)
    question = SchedulingRequest("q", "m", prompt(0, 1))
    recompute = producer.prompt_tokens(question) - producer.uncached_for({}, question, candidates())[
        HOSTS.index(holder)]
    assert recompute > 1000  # the ~1,400-token system prompt
    # queued prefill ahead on the holder beyond τ, but less than τ + the recompute: a cold replica
    # would answer later than the holder (or under τ sooner), so the prefix stays
    producer.load.add("queued", holder, recompute + 500, recompute + 500)
    assert [c.hostport for c in flt.filter({}, question, candidates())] == [holder]
    # beyond τ + the recompute: spread
    producer.load.release("queued")
    producer.load.add("queued", holder, recompute + 1500, recompute + 1500)
    assert len(flt.filter({}, SchedulingRequest("q2", "m", prompt(0, 2)), candidates())) == 3


def test_default_penalty_spreads_a_saturated_prefix_before_a_second_of_queue() -> None:
    # issue 16 (Zipf, ~2,000-token questions on ~3,000-token prompts): the default τ kept the hot
    # prefix on its holder until it had 8,192 prefill tokens (about 1.1 s on the simulated A100)
    # more queued than an idle replica. Now a holder whose queue would delay this request more
    # than recomputing the prefix on an idle replica, by over τ = 2,048 tokens (~0.28 s), gives it up
    scheduler = load_preset("predicted-latency", seed=3)
    flt = scheduler.plugins["prefix-cache-affinity-filter"]
    assert isinstance(flt, PrefixCacheAffinityFilter)
    producer = producer_of(scheduler)
    holder = pick(scheduler, "warm", prompt(0, 0))
    scheduler.response_started("warm")
    scheduler.request_done("warm", True)
    question = SchedulingRequest("q", "m", prompt(0, 1))
    recompute = producer.prompt_tokens(question) - producer.uncached_for({}, question, candidates())[
        HOSTS.index(holder)]
    producer.load.add("queued", holder, recompute + 1500, recompute + 1500)
    assert [c.hostport for c in flt.filter({}, question, candidates())] == [holder]  # under τ: stays
    producer.load.add("more", holder, 1000, 1000)
    assert len(flt.filter({}, SchedulingRequest("q2", "m", prompt(0, 2)), candidates())) == 3
    assert pick(scheduler, "spill", prompt(0, 3)) != holder


def test_affinity_filter_keeps_all_without_a_holder_or_when_exploring() -> None:
    scheduler = load_config_text("""
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-scorer
- type: inflight-load-producer
- type: prefix-cache-affinity-filter
  parameters: {explorationProbability: 1.0}
- type: predicted-ttft-scorer
""", seed=1)
    flt = scheduler.plugins["prefix-cache-affinity-filter"]
    assert isinstance(flt, PrefixCacheAffinityFilter)
    pick(scheduler, "r0", prompt(0, 0))
    cands = candidates()
    assert flt.filter({}, SchedulingRequest("a", "m", prompt(0, 1)), cands) == cands  # exploring
    flt.exploration = 0.0
    assert flt.filter({}, SchedulingRequest("b", "m", prompt(1, 1)), cands) == cands  # no holder
    assert len(flt.filter({}, SchedulingRequest("c", "m", prompt(0, 2)), cands)) == 1


def test_short_distinct_prompts_are_not_held_by_the_models_seed_hash() -> None:
    # a one-block prompt has hashes [seed(model), block]; every endpoint that served the model
    # holds the seed: that must not count as holding half the prompt (it made every short
    # distinct prompt stick to the first endpoint used)
    scheduler = load_preset("predicted-latency", seed=2)
    picks = [pick(scheduler, f"f{i}", f"filler {i} " * 10) for i in range(30)]
    assert set(picks) == set(HOSTS)
    assert max(picks.count(h) for h in HOSTS) <= 11


# ---- token-load-scorer, config --------------------------------------------------------------

def test_token_load_scorer_upstream_formula() -> None:
    scheduler = load_config_text("""
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: inflight-load-producer
- type: token-load-scorer
  parameters: {queueThresholdTokens: 1000}
""", seed=1)
    scorer = scheduler.plugins["token-load-scorer"]
    assert isinstance(scorer, TokenLoadScorer)
    load = producer_of(scheduler).load
    load.add("a", HOSTS[0], 250, 250)
    load.add("b", HOSTS[1], 5000, 0)
    assert scorer.score({}, SchedulingRequest("q", "m", "x"), candidates()) == [0.75, 0.0, 1.0]


@pytest.mark.parametrize(("plugin", "message"), [
    ("token-load-scorer", r"plugins\[0\]\.parameters\.loadProducer: token-load-scorer needs an "
                          r"inflight-load-producer plugin named 'inflight-load-producer'"),
    ("predicted-ttft-scorer", r"plugins\[0\]\.parameters\.loadProducer"),
    ("prefix-cache-affinity-filter", r"plugins\[0\]\.parameters\.loadProducer"),
])
def test_missing_load_producer_is_a_config_error_with_the_field_path(plugin: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config_text(f"""
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: {plugin}
""")


def test_bad_parameters_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"plugins\[1\]\.parameters\.affinityThreshold: must be in"):
        load_config_text("""
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: inflight-load-producer
- type: prefix-cache-affinity-filter
  parameters: {affinityThreshold: 2}
""")
    with pytest.raises(ConfigError, match=r"plugins\[0\]\.parameters\.prefixScorer: plugin 'q' is not"):
        load_config_text("""
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: inflight-load-producer
  parameters: {prefixScorer: q}
- {type: queue-scorer, name: q}
""")


def test_presets_keep_upstream_default_under_its_own_name() -> None:
    # since issue 16 the default is predicted-latency; upstream v1.0's stays under its own name
    assert PRESETS["default"] == PRESETS["predicted-latency"]
    assert PRESETS["upstream-v1.0"] == UPSTREAM_V1_DEFAULT != PRESETS["default"]
    assert "- type: queue-scorer\n- type: kv-cache-utilization-scorer\n- type: prefix-cache-scorer\n" in (
        PRESETS["upstream-v1.0"])


# ---- the Director's hooks ---------------------------------------------------------------

def director_with_preset() -> tuple[EppDirector, InflightLoadProducer]:
    ds = Datastore()
    ds.set_pool(PoolInfo("pool", group="inference.networking.k8s.io", selector={"app": "vllm"}, target_ports=(8000,)))
    ds.replace_pods([PodInfo(f"pod-{i}", ip, {"app": "vllm"}) for i, ip in enumerate(IPS)])
    scheduler = load_preset("predicted-latency", seed=1)
    director = EppDirector(ds, scheduler, MetricsStore(), config=DirectorConfig(seed=1))
    return director, producer_of(scheduler)


def infer(rid: str, text: str) -> InferenceRequest:
    return InferenceRequest(request_id=rid, headers={}, body={"model": "m", "prompt": text}, model="m",
                            objective=None, prompt=text, subset_hint=None, headers_only=False)


async def test_director_feeds_first_bytes_and_completion_to_the_accounting() -> None:
    director, producer = director_with_preset()
    decision = await director.handle_request(infer("a", prompt(0, 0)))
    assert producer.load.get(decision.endpoint).pending_prefill_tokens > 0
    director.on_response_headers("a", 200, {"content-type": "text/event-stream"})
    director.on_response_body("a", b'data: {"choices": [{"text": "x"}]}\n\n', False)
    assert producer.load.get(decision.endpoint).pending_prefill_tokens == 0
    assert producer.load.get(decision.endpoint).requests == 1
    director.on_response_body("a", b"data: [DONE]\n\n", True)
    director.on_request_done("a", completed=True)
    assert producer.load.get(decision.endpoint).requests == 0


async def test_director_releases_an_aborted_request() -> None:
    director, producer = director_with_preset()
    decision = await director.handle_request(infer("b", prompt(1, 0)))
    director.on_request_done("b", completed=False)  # stream reset before any response
    assert producer.load.get(decision.endpoint).requests == 0
    assert producer.load.get(decision.endpoint).pending_prefill_tokens == 0
    assert len(producer.load) == 0


def test_a_chats_next_turn_matches_the_whole_previous_prompt_on_its_endpoint() -> None:
    # issue 16 (multi-turn): turn k+1's prompt is turn k's prompt + the answer + new text; its
    # leading blocks hash like turn k's, so the session stays where its history is cached
    scheduler = load_preset("predicted-latency", seed=4)
    producer = producer_of(scheduler)
    history = prompt(1, 0)
    first = pick(scheduler, "t0", history)
    scheduler.response_started("t0")
    scheduler.request_done("t0", True)
    for turn in range(1, 5):
        history += f" answer {turn} " * 40 + f"\nUser turn {turn}: more?\nAssistant:"
        request = SchedulingRequest(f"q{turn}", "m", history)
        _, matched = producer.prefix.match({}, request) if producer.prefix else ([], {})
        assert matched.get(first, 0) >= (len(history) - len(f" answer {turn} " * 40) - 40) // 64
        assert pick(scheduler, f"t{turn}", history) == first
        scheduler.response_started(f"t{turn}")
        scheduler.request_done(f"t{turn}", True)
