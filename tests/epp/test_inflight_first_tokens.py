"""The pick-time accounting's prefill ends from the model servers' first-token counts.

Without response bodies (the production data plane: ext_proc ``response_body_mode: NONE``) the
EPP never sees a request's first bytes. It used to take a request admitted by the server (no
longer in the scraped waiting queue) as prefilled; with chunked prefill an admitted prompt is
still being computed for several steps (8 x 3,000 tokens admitted together take three steps of
8,192 tokens: over two seconds on a slow replica), so a busy replica looked idle. vLLM and SGLang
count each request's first token in their TTFT histogram (``..._time_to_first_token_seconds_count``):
each scrape's increase ends the pending prefill of that many of this EPP's oldest prefilling
requests there (issue 16's heterogeneous workload, docs/epp.md "Scheduling v2")."""

from __future__ import annotations

from infergate.epp.datastore import Endpoint
from infergate.epp.metrics_scraper import EndpointMetrics, parse_metrics
from infergate.epp.model_server_protocol import SGLANG, VLLM
from infergate.epp.scheduling import Candidate, load_preset
from infergate.epp.scheduling.plugins.inflight import InflightLoad, InflightLoadProducer

HOST = "10.0.0.1:8000"
ENDPOINT = Endpoint("pod-0", "10.0.0.1", 8000)


def clocked_load() -> tuple[InflightLoad, list[float]]:
    now = [100.0]
    return InflightLoad(clock=lambda: now[0]), now


def producer() -> InflightLoadProducer:
    plugin = load_preset("default", seed=1).plugins["inflight-load-producer"]
    assert isinstance(plugin, InflightLoadProducer)
    return plugin


def scrape(at: float, first_tokens: float | None, waiting: int = 0, running: int = 0) -> EndpointMetrics:
    return EndpointMetrics(waiting_queue=waiting, running=running, update_time=at, ttft_count=first_tokens)


def test_admitted_prompts_stay_pending_until_the_count_says_they_have_their_first_token() -> None:
    p = producer()
    now = [100.0]
    p.load.clock = lambda: now[0]
    p.scraped(HOST, scrape(100.0, 7.0))  # the baseline: 7 first tokens before this EPP's picks
    for rid in ("a", "b", "c"):
        now[0] += 0.01
        p.load.add(rid, HOST, 3000, 3000)
    # the server admitted all three (none waiting) and has prefilled none yet
    admitted = scrape(100.1, 7.0, waiting=0, running=3)
    p.scraped(HOST, admitted)
    assert p.view(Candidate(ENDPOINT, admitted)) == (3, 9000.0)
    # before: the admission rule took them as prefilled, and the replica looked idle
    old_rule = InflightLoad(clock=lambda: now[0])
    for rid in ("a", "b", "c"):
        old_rule.add(rid, HOST, 3000, 3000, now=100.0)
    assert old_rule.pending_after_scrape(HOST, 100.1, 0) == (0.0, 0)
    # one first token since: the oldest (a) is prefilled, b and c are not
    one_done = scrape(100.2, 8.0, running=3)
    p.scraped(HOST, one_done)
    assert p.view(Candidate(ENDPOINT, one_done)) == (3, 6000.0)
    assert [t.prefilling for t in p.load._endpoints[HOST].tracked.values()] == [False, True, True]
    # the same scrape again changes nothing
    p.scraped(HOST, one_done)
    assert p.view(Candidate(ENDPOINT, one_done))[1] == 6000.0


def test_picks_after_the_scrape_are_not_in_its_count() -> None:
    load, now = clocked_load()
    load.observe_first_tokens(HOST, 100.0, 0.0)
    load.add("a", HOST, 3000, 3000)
    now[0] = 100.3
    load.add("late", HOST, 500, 500)
    # two first tokens counted by a scrape at 100.2: a's, and another router's request
    load.observe_first_tokens(HOST, 100.2, 2.0)
    assert load.get(HOST).pending_prefill_tokens == 500
    assert load._requests["late"].prefilling


def test_requests_that_ended_or_had_first_bytes_take_no_count() -> None:
    load, _now = clocked_load()
    load.observe_first_tokens(HOST, 99.0, 0.0)
    for rid in ("a", "b", "c"):
        load.add(rid, HOST, 1000, 1000)
    load.release("a")  # ended (an error) before its first token
    load.observe_first_tokens(HOST, 100.5, 1.0)  # one first token: b's, not the ended a's
    tracked = load._endpoints[HOST].tracked
    assert not tracked["b"].prefilling and tracked["c"].prefilling
    assert load.get(HOST).pending_prefill_tokens == 1000
    assert len(load._endpoints[HOST].prefill_order) == 1  # only c is left to count


def test_a_server_restart_is_a_new_baseline() -> None:
    load, _now = clocked_load()
    load.observe_first_tokens(HOST, 99.0, 50.0)
    load.add("a", HOST, 1000, 1000)
    load.observe_first_tokens(HOST, 100.5, 3.0)  # counters began again: nothing is known of a
    assert load._requests["a"].prefilling
    load.observe_first_tokens(HOST, 100.6, 4.0)
    assert not load._requests["a"].prefilling


def test_first_bytes_are_exact_and_the_counts_are_then_ignored() -> None:
    p = producer()
    now = [100.0]
    p.load.clock = lambda: now[0]
    p.scraped(HOST, scrape(99.0, 0.0))
    p.load.add("a", HOST, 1000, 1000)
    p.load.add("b", HOST, 1000, 1000)
    p.response_started("b")  # the data plane sends bodies: b's first bytes
    p.scraped(HOST, scrape(100.5, 1.0))  # would end a's prefill (the oldest) by the count
    assert p.load._requests["a"].prefilling
    assert p.load.get(HOST).pending_prefill_tokens == 1000


def test_without_counts_the_admission_rule_stands() -> None:
    # a server that exposes no TTFT histogram (or a caller that feeds no scrapes): as before
    p = producer()
    p.load.add("a", HOST, 3000, 3000, now=100.0)
    admitted = scrape(100.1, None, waiting=0, running=1)
    p.scraped(HOST, admitted)
    assert p.view(Candidate(ENDPOINT, admitted)) == (1, 0.0)


def test_the_prefill_order_stays_bounded_by_the_requests_in_flight() -> None:
    load, _now = clocked_load()  # an endpoint whose scrapes never count first tokens
    for i in range(1000):
        load.add(f"r{i}", HOST, 100, 100)
        load.release(f"r{i}")
    assert len(load._endpoints[HOST].prefill_order) <= 1


def test_the_scrape_reads_the_first_token_count_summed_over_its_series() -> None:
    page = "\n".join([
        "vllm:num_requests_waiting 0",
        "vllm:kv_cache_usage_perc 0.1",
        'vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 12.0',
        'vllm:time_to_first_token_seconds_count{engine="1",model_name="m"} 30.0',
        "",
    ])
    assert parse_metrics(page, VLLM, now=1.0).ttft_count == 42.0
    assert "vllm:time_to_first_token_seconds_count" in VLLM.metric_names()
    assert "sglang:time_to_first_token_seconds_count" in SGLANG.metric_names()
    # a page without the histogram: None (the accounting keeps the admission rule)
    assert parse_metrics("vllm:num_requests_waiting 0\nvllm:kv_cache_usage_perc 0\n", VLLM, now=1.0).ttft_count is None
