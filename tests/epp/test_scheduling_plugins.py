"""Every scheduling plugin: scorers, filters, pickers, profile handler (semantics as upstream)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from infergate.epp.datastore import Endpoint
from infergate.epp.metrics_scraper import EndpointMetrics
from infergate.epp.scheduling.framework import (
    Candidate,
    ConfigError,
    PluginHandle,
    ProfileResult,
    SchedulerProfile,
    SchedulingError,
    SchedulingRequest,
    WeightedScorer,
)
from infergate.epp.scheduling.plugins import PLUGIN_TYPES, create_plugin
from infergate.epp.scheduling.plugins.filters import (
    HeaderBasedTestingFilter,
    LeastKvCacheFilter,
    LeastQueueFilter,
    LoraAffinityFilter,
    LowLatencyFilter,
    LowQueueFilter,
)
from infergate.epp.scheduling.plugins.pickers import (
    MaxScorePicker,
    RandomPicker,
    RoundRobinPicker,
    WeightedRandomPicker,
)
from infergate.epp.scheduling.plugins.profile_handlers import SingleProfileHandler
from infergate.epp.scheduling.plugins.scorers import (
    ActiveRequestScorer,
    KvCacheUtilizationScorer,
    LoraAffinityScorer,
    QueueScorer,
)

REQ = SchedulingRequest("r", "sql-lora", "prompt")


def cand(i: int, queue: int | None = 0, kv: float = 0.0, active: set[str] | None = None,
         waiting: set[str] | None = None, max_lora: int = 0, inflight: int = 0) -> Candidate:
    metrics = None if queue is None else EndpointMetrics(
        waiting_queue=queue, kv_cache_usage=kv, active_models=frozenset(active or ()),
        waiting_models=frozenset(waiting or ()), max_active_models=max_lora)
    return Candidate(Endpoint(f"pod-{i}", f"10.0.0.{i}", 8000), metrics, inflight)


def test_queue_scorer() -> None:
    s = QueueScorer("q")
    assert s.score({}, REQ, [cand(1, 0), cand(2, 5), cand(3, 10)]) == [1.0, 0.5, 0.0]
    assert s.score({}, REQ, [cand(1, 3), cand(2, 3)]) == [1.0, 1.0]
    assert s.score({}, REQ, [cand(1, 3), cand(2, None)]) == [1.0, 0.0]  # unknown is not idle
    assert s.score({}, REQ, [cand(1, None)]) == [0.0]
    s2 = QueueScorer("q", include_inflight=True)
    assert s2.score({}, REQ, [cand(1, 0, inflight=4), cand(2, 2)]) == [0.0, 1.0]


def test_kv_and_lora_and_active_request_scorers() -> None:
    assert KvCacheUtilizationScorer("kv").score({}, REQ, [cand(1, kv=0.25), cand(2, None)]) == [0.75, 0.0]
    lora = LoraAffinityScorer("l")
    scores = lora.score({}, REQ, [
        cand(1, active={"sql-lora"}, max_lora=1),  # active
        cand(2, active={"x"}, max_lora=2),  # free slot
        cand(3, active={"x"}, waiting={"sql-lora"}, max_lora=2),  # waiting, no slot
        cand(4, active={"x"}, max_lora=1),  # full
        cand(5, None),
    ])
    assert scores == [1.0, 0.8, 0.6, 0.0, 0.0]
    active = ActiveRequestScorer("a", max_inflight=4)
    assert active.score({}, REQ, [cand(1, inflight=0), cand(2, inflight=2), cand(3, inflight=9)]) == [1.0, 0.5, 0.0]


def test_band_filters_and_unknown_metrics() -> None:
    cs = [cand(1, 0, 0.9), cand(2, 1, 0.1), cand(3, 10, 0.5), cand(4, None)]
    # queue band: [0, 0 + 10/3] -> pods 1, 2 (unknown dropped)
    assert [c.endpoint.pod_name for c in LeastQueueFilter("f").filter({}, REQ, cs)] == ["pod-1", "pod-2"]
    # kv band: [0.1, 0.1 + 0.8/3] -> pod 2 only
    assert [c.endpoint.pod_name for c in LeastKvCacheFilter("f").filter({}, REQ, cs)] == ["pod-2"]
    unknown = [cand(1, None), cand(2, None)]
    assert LeastQueueFilter("f").filter({}, REQ, unknown) == unknown
    low = LowQueueFilter("f", queue_threshold=5, kv_threshold=0.8)
    assert [c.endpoint.pod_name for c in low.filter({}, REQ, cs)] == ["pod-2"]


def test_lora_affinity_filter_soft_affinity() -> None:
    cs = [cand(1, active={"sql-lora"}, max_lora=1), cand(2, active=set(), max_lora=1), cand(3, active={"x"}, max_lora=1)]
    picks: Counter[tuple[str, ...]] = Counter()
    f = LoraAffinityFilter("f", random.Random(3), threshold=0.9)
    for _ in range(1000):
        picks[tuple(c.endpoint.pod_name for c in f.filter({}, REQ, cs))] += 1
    assert set(picks) == {("pod-1",), ("pod-2",)}
    assert 850 <= picks[("pod-1",)] <= 950  # affinity group with probability 0.9
    only_free = [cand(2, active=set(), max_lora=1), cand(3, active={"x"}, max_lora=1)]
    assert [c.endpoint.pod_name for c in f.filter({}, REQ, only_free)] == ["pod-2"]


def test_header_based_testing_filter() -> None:
    cs = [cand(1), cand(2), cand(3)]
    f = HeaderBasedTestingFilter("t")
    req = SchedulingRequest("r", "m", "", {"test-epp-endpoint-selection": "10.0.0.3, 10.0.0.1:8000,10.9.9.9"})
    assert [c.endpoint.pod_name for c in f.filter({}, req, cs)] == ["pod-3", "pod-1"]
    assert f.filter({}, REQ, cs) == []


def test_max_score_picker_ties_are_random_and_seeded() -> None:
    cs = [cand(1), cand(2), cand(3)]
    picker = MaxScorePicker("p", random.Random(7))
    assert picker.pick({}, REQ, cs, [0.1, 0.9, 0.5]) == [cs[1]]
    counts = Counter(picker.pick({}, REQ, cs, [1.0, 1.0, 0.0])[0].hostport for _ in range(600))
    assert set(counts) == {cs[0].hostport, cs[1].hostport} and min(counts.values()) > 200
    top2 = MaxScorePicker("p", random.Random(7), max_endpoints=2)
    assert top2.pick({}, REQ, cs, [0.1, 0.9, 0.5]) == [cs[1], cs[2]]
    a = [MaxScorePicker("p", random.Random(1)).pick({}, REQ, cs, [1, 1, 1])[0] for _ in range(1)]
    b = [MaxScorePicker("p", random.Random(1)).pick({}, REQ, cs, [1, 1, 1])[0] for _ in range(1)]
    assert a == b


def test_random_weighted_and_round_robin_pickers() -> None:
    cs = [cand(1), cand(2), cand(3)]
    rnd = RandomPicker("r", random.Random(1), max_endpoints=5)
    assert sorted(c.hostport for c in rnd.pick({}, REQ, cs, [0, 0, 0])) == sorted(c.hostport for c in cs)
    weighted = WeightedRandomPicker("w", random.Random(2))
    counts = Counter(weighted.pick({}, REQ, cs, [3.0, 1.0, 0.0])[0].hostport for _ in range(4000))
    assert cs[2].hostport not in counts  # zero score never picked while others are positive
    assert 2.4 < counts[cs[0].hostport] / counts[cs[1].hostport] < 3.8  # proportional to score
    assert len(weighted.pick({}, REQ, cs, [0.0, 0.0, 0.0])) == 1  # all zero: uniform
    rr = RoundRobinPicker("rr", random.Random(0))
    shuffled = [cs[2], cs[0], cs[1]]
    picks = [rr.pick({}, REQ, shuffled, [0, 0, 0])[0].hostport for _ in range(6)]
    assert picks == [c.hostport for c in cs] * 2


def test_profile_run_weights_and_clamping() -> None:
    class Fixed:
        def __init__(self, name: str, scores: list[float]) -> None:
            self.name, self.scores = name, scores

        def score(self, state: object, request: object, candidates: object) -> list[float]:
            return self.scores

    cs = [cand(1), cand(2)]
    profile = SchedulerProfile("p", scorers=[WeightedScorer(Fixed("a", [2.0, 0.5]), 1),  # clamped to 1.0
                                             WeightedScorer(Fixed("b", [-3.0, 0.5]), 3)],  # clamped to 0
                               picker=MaxScorePicker("m", random.Random(0)))
    # totals: pod1 = 1.0 + 0 = 1.0 ; pod2 = 0.5 + 1.5 = 2.0
    assert profile.run({}, REQ, cs).targets == [cs[1]]
    empty = SchedulerProfile("p", filters=[HeaderBasedTestingFilter("t")], picker=MaxScorePicker("m", random.Random(0)))
    with pytest.raises(SchedulingError, match="no pods available"):
        empty.run({}, REQ, cs)


def test_single_profile_handler() -> None:
    h = SingleProfileHandler("h")
    profiles = {"default": SchedulerProfile("default")}
    assert h.pick_profiles({}, REQ, profiles, {}) == profiles
    assert h.pick_profiles({}, REQ, profiles, {"default": None}) == {}
    result = h.process_results({}, REQ, {"default": ProfileResult([cand(1)])})
    assert result.primary_profile_name == "default"
    with pytest.raises(SchedulingError):
        h.process_results({}, REQ, {"default": None})
    with pytest.raises(SchedulingError):
        h.process_results({}, REQ, {"a": ProfileResult([cand(1)]), "b": ProfileResult([cand(2)])})


@pytest.mark.parametrize("type_name", sorted(PLUGIN_TYPES))
def test_every_plugin_rejects_unknown_parameters(type_name: str) -> None:
    plugin = create_plugin(type_name, "x", {}, PluginHandle(random.Random(0)))
    assert plugin.name == "x" and plugin.type_name == type_name
    with pytest.raises(ConfigError, match=r"plugins\.parameters\.bogus: unknown parameter"):
        create_plugin(type_name, "x", {"bogus": 1}, PluginHandle())


@pytest.mark.parametrize(("type_name", "params", "message"), [
    ("max-score-picker", {"maxNumOfEndpoints": "two"}, "maxNumOfEndpoints: must be an integer"),
    ("prefix-cache-scorer", {"hashBlockSize": 1.5}, "hashBlockSize: must be an integer"),
    ("low-queue-filter", {"kvCacheThreshold": 2}, "kvCacheThreshold: must be in"),
    ("queue-scorer", {"includeInflight": "yes"}, "includeInflight: must be a boolean"),
    ("active-request-scorer", {"maxInflight": 0}, "maxInflight: must be >= 1"),
])
def test_invalid_parameters(type_name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_plugin(type_name, "x", params, PluginHandle())


def test_valid_parameters_are_applied() -> None:
    picker = create_plugin("max-score-picker", "p", {"maxNumOfEndpoints": 3}, PluginHandle())
    assert isinstance(picker, MaxScorePicker) and picker.max_endpoints == 3
    assert create_plugin("random-picker", "p", {"maxNumOfEndpoints": 0}, PluginHandle()).max_endpoints == 1  # type: ignore[attr-defined]
    prefix = create_plugin("prefix-cache-scorer", "p", {"hashBlockSize": 16, "maxPrefixBlocksToMatch": 4,
                                                        "lruCapacityPerServer": -1}, PluginHandle())
    assert (prefix.block_size, prefix.max_blocks, prefix.indexer.capacity) == (16, 4, 31250)  # type: ignore[attr-defined]


def test_low_latency_decision_tree() -> None:
    f = LowLatencyFilter("t", random.Random(0), queueing_threshold_lora=128, lora_affinity_threshold=1.0)
    names = lambda cs: [c.endpoint.pod_name for c in cs]  # noqa: E731
    # under the threshold: LoRA affinity first (pod-1 has the adapter), then the bands
    cs = [cand(1, 50, 0.5, active={"sql-lora"}, max_lora=1), cand(2, 0, 0.0, active={"x"}, max_lora=1),
          cand(3, 200, 0.0, active={"sql-lora"}, max_lora=1)]
    assert names(f.filter({}, REQ, cs)) == ["pod-1"]  # pod-3 is over 128 and left out first
    # nobody has the adapter or a free slot: LoRA fails, its input goes on to the bands
    cs = [cand(1, 10, 0.9, active={"x"}, max_lora=1), cand(2, 0, 0.5, active={"y"}, max_lora=1),
          cand(3, 1, 0.1, active={"z"}, max_lora=1)]
    assert names(f.filter({}, REQ, cs)) == ["pod-3"]  # queue band [0, 3.3] -> 2, 3; KV band -> 3
    # everyone over the threshold: least-queue band first, then LoRA, then KV
    cs = [cand(1, 300, 0.1, active={"sql-lora"}, max_lora=1), cand(2, 200, 0.2, active={"x"}, max_lora=2),
          cand(3, 200, 0.1, active={"x"}, max_lora=1)]
    assert names(f.filter({}, REQ, cs)) == ["pod-2"]  # band -> 2, 3; LoRA: only 2 has a free slot


def test_v030_preset() -> None:
    from infergate.epp.scheduling import load_preset

    s = load_preset("v0.3.0", seed=1)
    profile = s.profiles["default"]
    assert [f.name for f in profile.filters] == ["low-latency-filter"] and isinstance(profile.picker, RandomPicker)
    cs = [cand(1, 0), cand(2, 0), cand(3, 20)]
    picks = {s.schedule(SchedulingRequest(f"r{i}", "m", "p"), cs)[0].primary.targets[0].endpoint.pod_name
             for i in range(50)}
    assert picks == {"pod-1", "pod-2"}  # random among the survivors of the tree
