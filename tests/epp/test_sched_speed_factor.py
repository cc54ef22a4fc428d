"""The endpoint speed factor (inflight.EndpointSpeed) and its place in the predicted TTFT
(predicted_latency.predicted_costs): a slower replica's token cost counts more."""

from __future__ import annotations

import pytest

from infergate.epp.datastore import Datastore, Endpoint, PodInfo, PoolInfo
from infergate.epp.director import DirectorConfig, EppDirector
from infergate.epp.metrics_scraper import MetricsStore
from infergate.epp.scheduling import Candidate, ConfigError, SchedulingRequest, load_config_text, load_preset
from infergate.epp.scheduling.framework import CycleState
from infergate.epp.scheduling.plugins.inflight import EndpointSpeed, InflightLoad, InflightLoadProducer
from infergate.epp.scheduling.plugins.predicted_latency import predicted_costs

FAST, SLOW = "10.0.0.1:8000", "10.0.0.2:8000"


def test_an_endpoint_twice_as_slow_gets_a_factor_of_about_two_and_the_fast_one_stays_at_one() -> None:
    speed = EndpointSpeed(decay=0.1, min_samples=4)
    for _ in range(40):
        speed.observe(FAST, 1.0)
        speed.observe(SLOW, 2.0)
    assert speed.factor(FAST) == 1.0
    assert speed.factor(SLOW) == pytest.approx(2.0)


def test_the_factor_is_one_until_enough_samples_on_it_and_another_endpoint() -> None:
    speed = EndpointSpeed(min_samples=4)
    for _ in range(3):
        speed.observe(FAST, 1.0)
        speed.observe(SLOW, 3.0)
    assert speed.factor(SLOW) == 1.0  # 3 samples each: too few
    speed.observe(SLOW, 3.0)
    assert speed.factor(SLOW) == 1.0  # the only endpoint with enough: no reference
    speed.observe(FAST, 1.0)
    assert speed.factor(SLOW) == pytest.approx(3.0)
    assert speed.factor("10.0.0.9:8000") == 1.0  # never seen


def test_small_differences_count_as_one_and_large_ones_are_bounded() -> None:
    speed = EndpointSpeed(decay=1.0, min_samples=1, threshold=1.5, high=4.0)
    speed.observe(FAST, 1.0)
    speed.observe(SLOW, 1.4)  # a homogeneous pool's drift (load, cache misses)
    assert speed.factor(SLOW) == 1.0
    speed.observe(SLOW, 10.0)
    assert speed.factor(SLOW) == 4.0


def test_min_samples_zero_turns_the_factor_off_and_is_the_default() -> None:
    for speed in (EndpointSpeed(min_samples=0), EndpointSpeed(), InflightLoad().speed):
        for _ in range(50):
            speed.observe(FAST, 1.0)
            speed.observe(SLOW, 5.0)
        assert speed.factor(SLOW) == 1.0


def test_only_completed_requests_feed_the_factor_with_their_pick_to_end_time() -> None:
    now = [0.0]
    load = InflightLoad(clock=lambda: now[0], speed=EndpointSpeed(decay=1.0, min_samples=1))
    for i, (host, seconds) in enumerate([(FAST, 1.0), (SLOW, 2.5)]):
        load.add(f"r{i}", host, 100, 100)
        now[0] += seconds
        load.release(f"r{i}", completed=True)
        now[0] = 0.0
    load.add("aborted", FAST, 100, 100)
    now[0] = 100.0
    load.release("aborted")  # not completed (error, abort): says nothing of the endpoint's speed
    assert load.speed.factor(SLOW) == pytest.approx(2.5)
    assert load.speed.factor(FAST) == 1.0


CONFIG = """\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: inflight-load-producer
  parameters: {speedFactorMinSamples: 2, speedFactorDecay: 1.0, speedFactorThreshold: 1.2, speedFactorMax: 3}
- type: predicted-ttft-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: predicted-ttft-scorer
"""


def test_predicted_cost_is_the_token_cost_times_the_speed_factor_and_the_pick_follows() -> None:
    scheduler = load_config_text(CONFIG)
    producer = scheduler.plugins["inflight-load-producer"]
    assert isinstance(producer, InflightLoadProducer)
    speed = producer.load.speed
    assert (speed.min_samples, speed.decay, speed.threshold, speed.high) == (2, 1.0, 1.2, 3.0)
    cands = [Candidate(Endpoint("fast", "10.0.0.1", 8000), None), Candidate(Endpoint("slow", "10.0.0.2", 8000), None)]
    request = SchedulingRequest("q", "m", "x" * 400)  # 100 tokens
    producer.load.add("busy", FAST, 150, 150)  # the fast one has 150 tokens queued
    before = predicted_costs(producer, 16.0, CycleState(), request, cands)
    assert before == [150 + 100 + 16, 100]  # tokens only: the idle slow one looks best
    result, _ = scheduler.schedule(request, cands)
    assert result.primary.targets[0].hostport == SLOW
    for _ in range(2):
        speed.observe(FAST, 1.0)
        speed.observe(SLOW, 8.0)  # 8x: bounded to 3
    after = predicted_costs(producer, 16.0, CycleState(), request, cands)
    assert after == [150 + 100 + 16, 100 * 3.0]
    result, _ = scheduler.schedule(request, cands)
    assert result.primary.targets[0].hostport == FAST  # 266 < 300: the queue on the fast one is worth it


def test_speed_factor_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="speedFactorThreshold"):
        load_config_text(CONFIG.replace("speedFactorThreshold: 1.2", "speedFactorThreshold: 0.5"))


# ---- a declared speed factor: the pod label infergate.io/speed-factor ----------------------------

def _pods(labels_of_slow: dict[str, str]) -> tuple[EppDirector, Datastore, InflightLoadProducer]:
    """A Director on a pool of a fast and a slow pod (the slow one with ``labels_of_slow``),
    default profile: (director, datastore, the profile's inflight-load-producer)."""

    ds = Datastore()
    ds.set_pool(PoolInfo("pool", selector={"app": "vllm"}, target_ports=(8000,)))
    ds.replace_pods([PodInfo("fast", "10.0.0.1", {"app": "vllm"}),
                     PodInfo("slow", "10.0.0.2", {"app": "vllm", **labels_of_slow})])
    scheduler = load_preset("default", seed=1)
    director = EppDirector(ds, scheduler, MetricsStore(), config=DirectorConfig(seed=1))
    producer = scheduler.plugins["inflight-load-producer"]
    assert isinstance(producer, InflightLoadProducer)
    return director, ds, producer


def test_a_pod_that_declares_its_speed_factor_costs_that_much_more_from_the_first_pick() -> None:
    """The label is read when the pool changes (the Director's datastore hook), before any request
    ends: the cold burst of a heterogeneous pool is placed knowing which replicas are slow."""
    _, ds, producer = _pods({"infergate.io/speed-factor": "2"})
    assert isinstance(producer, InflightLoadProducer)
    assert producer.load.speed_enabled  # by the label alone: the learned factors are off
    assert (producer.load.speed_factor(FAST), producer.load.speed_factor(SLOW)) == (1.0, 2.0)
    cands = [Candidate(Endpoint("fast", "10.0.0.1", 8000), None), Candidate(Endpoint("slow", "10.0.0.2", 8000), None)]
    request = SchedulingRequest("q", "m", "x" * 400)  # 100 tokens
    producer.load.add("busy", FAST, 150, 150)
    assert predicted_costs(producer, 16.0, CycleState(), request, cands) == [150 + 100 + 16, 100 * 2.0]
    ds.replace_pods([PodInfo("fast", "10.0.0.1", {"app": "vllm"}),  # the label removed: back to tokens
                     PodInfo("slow", "10.0.0.2", {"app": "vllm"})])
    assert not producer.load.speed_enabled and producer.load.speed_factor(SLOW) == 1.0
    assert predicted_costs(producer, 16.0, CycleState(), request, cands) == [150 + 100 + 16, 100]


def test_a_pool_without_the_label_is_scored_as_before_and_bad_values_are_ignored(
        caplog: pytest.LogCaptureFixture) -> None:
    _, _, producer = _pods({})
    assert isinstance(producer, InflightLoadProducer)
    assert not producer.load.speed_enabled  # the hot path does no per-candidate factor
    for value in ("fast", "0", "-2", "nan", "1e9"):
        with caplog.at_level("WARNING"):
            _, _, producer = _pods({"infergate.io/speed-factor": value})
        assert isinstance(producer, InflightLoadProducer)
        assert not producer.load.speed_enabled, value
        assert f"label infergate.io/speed-factor={value!r} ignored: not a number in (0, 100]" in caplog.text
    _, _, producer = _pods({"infergate.io/speed-factor": "1"})  # declared as fast as the reference
    assert isinstance(producer, InflightLoadProducer)
    assert not producer.load.speed_enabled


def test_the_label_is_a_parameter_and_a_learned_factor_only_raises_it() -> None:
    config = CONFIG.replace("speedFactorMax: 3}", "speedFactorMax: 3, speedFactorLabel: gpu.example/slowness}")
    assert "speedFactorLabel" in config
    scheduler = load_config_text(config)
    producer = scheduler.plugins["inflight-load-producer"]
    assert isinstance(producer, InflightLoadProducer)
    producer.endpoints_changed([Endpoint("fast", "10.0.0.1", 8000, labels={"infergate.io/speed-factor": "3"}),
                                Endpoint("slow", "10.0.0.2", 8000, labels={"gpu.example/slowness": "1.5"})])
    assert producer.load.speed_factor(FAST) == 1.0  # the default label is not this config's
    assert producer.load.speed_factor(SLOW) == 1.5
    for _ in range(2):  # the config's learned factor (min 2 samples, bounded to 3) says 3x: the larger wins
        producer.load.speed.observe(FAST, 1.0)
        producer.load.speed.observe(SLOW, 3.0)
    assert producer.load.speed_factor(SLOW) == 3.0
    off = load_config_text(CONFIG.replace("speedFactorMax: 3}", "speedFactorMax: 3, speedFactorLabel: ''}"))
    producer = off.plugins["inflight-load-producer"]
    assert isinstance(producer, InflightLoadProducer)
    producer.endpoints_changed([Endpoint("slow", "10.0.0.2", 8000, labels={"infergate.io/speed-factor": "2"})])
    assert producer.load.speed_factor(SLOW) == 1.0  # "": no declared factors
