"""The speed factor from prefill progress (plugins/prefill_rate.PrefillRate, ``prefillRateMinTokens``):
each endpoint's prompt tokens prefilled per second while saturated, from the scrapes' first-token
counts, against the fastest endpoint's; off by default (docs/epp.md, "Speed factor")."""

from __future__ import annotations

import pytest

from infergate.epp.datastore import Endpoint
from infergate.epp.metrics_scraper import EndpointMetrics
from infergate.epp.scheduling import Candidate, ConfigError, SchedulingRequest, load_config_text, load_preset
from infergate.epp.scheduling.framework import CycleState
from infergate.epp.scheduling.plugins.inflight import InflightLoadProducer
from infergate.epp.scheduling.plugins.predicted_latency import predicted_costs
from infergate.epp.scheduling.plugins.prefill_rate import PrefillRate

FAST, SLOW = "10.0.0.1:8000", "10.0.0.2:8000"
CHUNK = 8192


def test_the_rate_is_tokens_released_over_the_saturated_intervals_only() -> None:
    rate = PrefillRate(min_tokens=1000, saturated_tokens=CHUNK)
    rate.observe(FAST, 0.0, 0.0, 20_000)  # baseline scrape: saturated from here
    rate.observe(FAST, 1.0, 6000, 14_000)  # 6,000 tokens in 1 s at full load
    rate.observe(FAST, 2.0, 6000, 100)  # another 6,000: now nearly idle
    assert rate.rate(FAST) == pytest.approx(6000.0)
    rate.observe(FAST, 5.0, 50, 0)  # an interval that started below a step's budget: not counted
    assert rate.rate(FAST) == pytest.approx(6000.0)
    rate.observe(FAST, 5.0, 9999, 0)  # the same scrape again: nothing
    assert rate.rate(FAST) == pytest.approx(6000.0)


def test_a_replica_prefilling_half_as_fast_gets_a_factor_of_two_and_the_fast_one_one() -> None:
    rate = PrefillRate(min_tokens=4096, saturated_tokens=CHUNK)
    for host, per_second in ((FAST, 7000), (SLOW, 3500)):
        rate.observe(host, 0.0, 0, 30_000)
        for t in range(1, 4):
            rate.observe(host, float(t), per_second, 30_000 - per_second * t)
    assert rate.factor(FAST) == 1.0
    assert rate.factor(SLOW) == pytest.approx(2.0)
    assert rate.factor("10.0.0.9:8000") == 1.0  # never seen


def test_the_factor_is_one_until_two_endpoints_have_enough_tokens_small_ratios_are_one_and_large_bounded() -> None:
    rate = PrefillRate(min_tokens=4096, saturated_tokens=CHUNK, threshold=1.5, high=3.0)
    rate.observe(FAST, 0.0, 0, 20_000)
    rate.observe(SLOW, 0.0, 0, 20_000)
    rate.observe(SLOW, 1.0, 1000, 19_000)  # 1,000 tokens/s, but too few tokens seen yet
    assert rate.factor(SLOW) == 1.0
    rate.observe(SLOW, 5.0, 4000, 15_000)  # 5,000 tokens in 5 s: ready, but the only one
    assert rate.factor(SLOW) == 1.0
    rate.observe(FAST, 1.0, 7000, 13_000)
    assert rate.factor(SLOW) == 3.0  # 7x slower: bounded
    drift = PrefillRate(min_tokens=1, saturated_tokens=CHUNK, threshold=1.5)
    for host, tokens in ((FAST, 7000), (SLOW, 5000)):  # 1.4x: a homogeneous pool's spread
        drift.observe(host, 0.0, 0, 20_000)
        drift.observe(host, 1.0, tokens, 10_000)
    assert drift.factor(SLOW) == 1.0


def test_old_samples_fade_past_the_window() -> None:
    rate = PrefillRate(min_tokens=1, saturated_tokens=CHUNK, window=10.0)
    rate.observe(FAST, 0.0, 0, 20_000)
    for t in range(1, 11):
        rate.observe(FAST, float(t), 2000, 20_000)  # 2,000 tokens/s for 10 s
    for t in range(11, 31):
        rate.observe(FAST, float(t), 8000, 20_000)  # then 8,000 tokens/s
    faded = rate.rate(FAST)
    assert faded is not None and faded > 7500  # without fading: (20,000 + 160,000) / 30 s = 6,000


def test_off_by_default_in_the_default_profile_and_then_no_factor() -> None:
    producer = load_preset("default", seed=1).plugins["inflight-load-producer"]
    assert isinstance(producer, InflightLoadProducer)
    assert not producer.load.prefill_rate.enabled and not producer.load.speed_enabled
    off = PrefillRate(min_tokens=0)
    off.observe(SLOW, 0.0, 0, 20_000)
    off.observe(SLOW, 1.0, 10, 20_000)
    assert off.rate(SLOW) is None and off.factor(SLOW) == 1.0


CONFIG = """\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: inflight-load-producer
  parameters: {prefillRateMinTokens: 2000, speedFactorThreshold: 1.75, speedFactorMax: 3}
- type: predicted-ttft-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: predicted-ttft-scorer
"""


def scraped(producer: InflightLoadProducer, host: str, at: float, first_tokens: float) -> None:
    producer.scraped(host, EndpointMetrics(update_time=at, ttft_count=first_tokens))


def test_first_token_counts_feed_the_rate_and_the_predicted_cost_follows() -> None:
    scheduler = load_config_text(CONFIG)
    producer = scheduler.plugins["inflight-load-producer"]
    assert isinstance(producer, InflightLoadProducer)
    rate = producer.load.prefill_rate
    assert (rate.min_tokens, rate.saturated_tokens, rate.threshold, rate.high) == (2000, 8192, 1.75, 3.0)
    cands = [Candidate(Endpoint("fast", "10.0.0.1", 8000), None), Candidate(Endpoint("slow", "10.0.0.2", 8000), None)]
    request = SchedulingRequest("q", "m", "x" * 400)  # 100 tokens
    for host in (FAST, SLOW):  # the baseline counts, then a cold burst: twelve 3,000-token prompts on each
        scraped(producer, host, 0.0, 0.0)
        for i in range(12):
            producer.load.add(f"{host}-{i}", host, 3000, 3000, now=0.5)
    for host in (FAST, SLOW):  # nothing pending when the interval began: not a measure of speed
        scraped(producer, host, 1.0, 0.0)
    assert rate.rate(FAST) is None and producer.speed_factor(cands[1]) == 1.0
    before = predicted_costs(producer, 0.0, CycleState(), request, cands)
    assert before == [36_000 + 100, 36_000 + 100]
    scraped(producer, FAST, 2.0, 2.0)  # saturated for a second: 6,000 tokens/s
    scraped(producer, SLOW, 2.0, 1.0)  # 3,000 tokens/s
    assert rate.rate(FAST) == pytest.approx(6000.0) and rate.rate(SLOW) == pytest.approx(3000.0)
    assert producer.speed_factor(cands[0]) == 1.0 and producer.speed_factor(cands[1]) == pytest.approx(2.0)
    costs = predicted_costs(producer, 0.0, CycleState(), request, cands)
    assert costs == [pytest.approx(30_000 + 100), pytest.approx(2 * (33_000 + 100))]


def test_prefill_rate_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="prefillRateMinTokens"):
        load_config_text(CONFIG.replace("prefillRateMinTokens: 2000", "prefillRateMinTokens: -1"))
