"""The decision replay (bench.peers.replay): engines and scheduler on a virtual clock."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from infergate.bench.peers.driver import SHED_BACKOFF_S
from infergate.bench.peers.replay import EppPolicy, VirtualTimeLoop, _Policy, _Pool, _replay, replay
from infergate.bench.peers.workloads import CRITICAL, SHEDDABLE, make
from infergate.epp.saturation import SaturationConfig
from infergate.epp.scheduling.config import PRESETS


def test_the_virtual_clock_jumps_to_the_next_timer() -> None:
    loop = VirtualTimeLoop()
    try:
        started = time.monotonic()
        loop.run_until_complete(asyncio.sleep(3600))
        assert loop.time() >= 3600
        assert time.monotonic() - started < 5
    finally:
        loop.close()


def test_replay_is_deterministic_and_serves_every_turn() -> None:
    workload = make("shared-prefix-zipf", 3.0, 1, 4)
    first = replay(workload, "default", 1)
    again = replay(workload, "default", 1)
    assert len(first.outcomes) == workload.requests
    assert [o.ttft for o in first.outcomes] == [o.ttft for o in again.outcomes]
    assert [o.replica for o in first.outcomes] == [o.replica for o in again.outcomes]
    oracle = replay(workload, "oracle", 1)
    assert len(oracle.outcomes) == workload.requests
    assert 0 < oracle.ttft(90) < 10 and 0 < first.ttft(90) < 10


def test_multi_turn_history_hits_the_prefix_cache_and_closed_loop_counts_tokens() -> None:
    chat = replay(make("multi-turn", 3.0, 1, 4), "default", 1)
    assert chat.prefix_hit > 0.5
    closed = replay(make("shared-prefix", 2.0, 1, 4, closed=True), "default", 1, closed_s=2.0)
    assert closed.output_tokens > 0 and closed.tokens_per_s > 0


def test_a_closed_loop_replay_rates_its_window_as_the_benchmark_does() -> None:
    """Output tokens/s and goodput of a replayed closed loop are its window's: the turns in flight at
    its end finish (and count in the latencies), but their late tokens and requests do not."""
    workload = make("shared-prefix", 3.0, 1, 4, closed=True)
    result = replay(workload, "default", 1, closed_s=3.0)
    assert result.window == result.model_time == 3.0
    late = [o for o in result.outcomes if o.end > 3.0]
    assert late and all(o.start < 3.0 for o in late)  # sent within the window, ended after it
    in_window = sum(1 for o in result.outcomes if o.meets_slo and o.end <= 3.0)
    assert math.isclose(result.goodput, in_window / 3.0)
    assert result.goodput < sum(1 for o in result.outcomes if o.meets_slo) / 3.0
    # 32 users' tokens by 3 s: fewer than every turn's 64 (those in flight had not all arrived)
    assert 0 < result.output_tokens < 64 * len(result.outcomes)


def test_heterogeneous_replays_with_its_slower_replicas() -> None:
    # the replay refused it before it modelled slower replicas
    result = replay(make("heterogeneous", 1.0, 1, 4), "default", 1)
    assert len(result.outcomes) == make("heterogeneous", 1.0, 1, 4).requests


# ---- objectives (priority-mix) ------------------------------------------------------------

class _ShedAllSheddable(_Policy):
    """Round robin that sheds every sheddable request (to count the closed loop's back-off)."""

    name = "shed-sheddable"

    def __init__(self) -> None:
        self.next = 0

    def pick(self, pool: _Pool, rid: str, prompt: str, priority: int = 0, lora: str | None = None) -> int | None:
        if priority < 0:
            return None
        self.next += 1
        return self.next % len(pool.engines)


def test_priority_mix_replays_objectives_sheds_and_critical_figures() -> None:
    workload = make("priority-mix", 4.0, 1, 4)
    assert {s.objective for s in workload.sessions} == {CRITICAL, SHEDDABLE}
    holdback = SaturationConfig(sheddable_max_inflight_per_endpoint=3)
    held = replay(workload, "default", 1, saturation=holdback)
    assert held.priority and held.shed and set(held.shed) == {SHEDDABLE}  # critical is never shed
    assert len(held.outcomes) + len(held.shed) == workload.requests
    critical = sum(1 for s in workload.sessions if s.objective == CRITICAL)
    assert len(held.measured) == critical  # the figures are the critical requests'
    assert all(o.objective == CRITICAL for o in held.measured)
    assert 0 < held.goodput <= critical / held.model_time
    assert all(o.itl > 0 for o in held.outcomes)
    oracle = replay(workload, "oracle", 1)  # like the peers: no priorities, nothing shed
    assert not oracle.shed and len(oracle.outcomes) == workload.requests
    # the EPP's saturation knobs reach the replay: the priority holdback off (the default) sheds fewer
    # (with the prefill holdback's reading over time off too: on this short run it sheds as many)
    off = replay(workload, "default", 1, saturation=SaturationConfig(sheddable_max_prefill_busy_fraction=0))
    assert len(off.shed) < len(held.shed)
    assert len(off.shed) < len(replay(workload, "default", 1).shed)  # the default's reading over time
    again = replay(workload, "default", 1, saturation=holdback)
    assert [o.ttft for o in again.outcomes] == [o.ttft for o in held.outcomes]  # deterministic


def test_closed_loop_users_keep_their_objective_and_back_off_after_a_shed() -> None:
    workload = make("priority-mix", 3.0, 1, 4, closed=True)
    users = [s.objective for s in workload.sessions[: workload.concurrency]]
    loop = VirtualTimeLoop()
    try:
        result = loop.run_until_complete(_replay(workload, _ShedAllSheddable(), 1, closed_s=3.0))
    finally:
        loop.close()
    # each sheddable user is shed at 0, 1 and 2 s (SHED_BACKOFF_S), then the time is up
    assert SHED_BACKOFF_S == 1.0
    assert len(result.shed) == 3 * users.count(SHEDDABLE)
    assert {o.objective for o in result.outcomes} == {CRITICAL}


def test_workloads_without_objectives_replay_the_same_with_or_without_the_holdback() -> None:
    for name in ("shared-prefix", "multi-turn"):
        workload = make(name, 2.0, 1, 4)
        on = replay(workload, "default", 1, saturation=SaturationConfig(sheddable_max_inflight_per_endpoint=3))
        off = replay(workload, "default", 1)
        assert not on.shed and not on.priority
        assert [(o.ttft, o.replica, o.itl) for o in on.outcomes] == [(o.ttft, o.replica, o.itl) for o in off.outcomes]


NO_LORA_TERM = """\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: prefix-cache-scorer
- type: inflight-load-producer
- type: prefix-cache-affinity-filter
  parameters: {loraLoadPenaltyTokens: 0, loraSlotWaitPenaltyTokens: 0}
- type: predicted-ttft-scorer
  parameters: {loraLoadPenaltyTokens: 0, loraSlotWaitPenaltyTokens: 0}
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: prefix-cache-affinity-filter
  - {pluginRef: prefix-cache-scorer, weight: 0}
  - pluginRef: predicted-ttft-scorer
"""


def test_lora_mix_replays_with_adapters_and_the_default_keeps_adapters_off_full_slots(tmp_path: Path) -> None:
    workload = make("lora-mix", 30.0, 1, 4)
    default = replay(workload, "default", 1)
    assert len(default.outcomes) == workload.requests
    oracle = replay(workload, "oracle", 1)
    assert len(oracle.outcomes) == workload.requests
    # the default profile before its LoRA term (the same plugins, penalties 0): 0.246 s vs 0.097 s
    config = tmp_path / "no-lora-term.yaml"
    config.write_text(NO_LORA_TERM)
    before = replay(workload, str(config), 1)
    assert default.ttft(90) <= oracle.ttft(90) * 1.2 < before.ttft(90)


@pytest.mark.parametrize(("name", "closed"), [("shared-prefix", False), ("shared-prefix-zipf", False),
                                              ("multi-turn", False), ("shared-prefix-zipf", True)])
def test_the_lora_term_changes_nothing_without_adapters(name: str, closed: bool, tmp_path: Path) -> None:
    workload = make(name, 3.0, 2, 4, closed=closed)
    config = tmp_path / "no-lora-term.yaml"
    config.write_text(NO_LORA_TERM)
    closed_s = 3.0 if closed else None
    default = replay(workload, "default", 2, closed_s)
    without = replay(workload, str(config), 2, closed_s)
    assert [(o.ttft, o.replica) for o in default.outcomes] == [(o.ttft, o.replica) for o in without.outcomes]


def test_heterogeneous_slower_replicas_take_longer_and_the_epp_learns_their_speed() -> None:
    """The last ``slow_replicas`` engines run the benchmark's SLOW_PROFILE_SETTINGS (twice the step
    time); the EPP's speed factor, fed by the replay's request ends as the Director feeds it, finds them."""
    workload = make("heterogeneous", 10.0, 1, 4, closed=True)
    pool = _Pool(workload, 1)
    fast, slow = pool.engines[0].profile, pool.engines[-1].profile
    assert slow.step_base_s == pytest.approx(2 * fast.step_base_s)
    assert slow.per_prefill_token_s == pytest.approx(2 * fast.per_prefill_token_s)
    loop = VirtualTimeLoop()
    try:
        text = PRESETS["default"].replace("- type: inflight-load-producer\n", "- type: inflight-load-producer\n"
                                          "  parameters: {speedFactorMinSamples: 16}\n")
        assert "speedFactorMinSamples" in text
        policy = EppPolicy("speed", text, 1, loop.time)
        result = loop.run_until_complete(_replay(workload, policy, 1, closed_s=10.0))
    finally:
        loop.close()
    assert result.outcomes and result.output_tokens > 0
    assert policy.producer is not None
    factors = [policy.producer.load.speed.factor(e.hostport) for e in pool.endpoints]
    assert factors[:2] == [1.0, 1.0]
    assert all(f >= 1.5 for f in factors[2:]), factors
