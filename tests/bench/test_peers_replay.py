"""The decision replay (bench.peers.replay): engines and scheduler on a virtual clock."""

from __future__ import annotations

import asyncio
import time

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
