"""The decision replay (bench.peers.replay): engines and scheduler on a virtual clock."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from infergate.bench.peers.replay import VirtualTimeLoop, replay
from infergate.bench.peers.workloads import make


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


def test_workloads_the_replay_cannot_model_are_refused() -> None:
    with pytest.raises(ValueError, match="slower replicas"):
        replay(make("heterogeneous", 1.0, 1, 4), "default", 1)


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
