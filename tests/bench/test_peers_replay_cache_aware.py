"""The decision replay's emulation of the peers' ``cache_aware`` policy (replay.CacheAwarePolicy) and
its "after warm-up" figure (issue 16's heterogeneous analysis, docs/epp.md "Speed factor")."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from infergate.bench.peers.replay import CacheAwarePolicy, ReplayResult, TurnOutcome

PREFIX_A = "a" * 4000
PREFIX_B = "b" * 4000


def pool(replicas: int = 3) -> Any:
    return cast(Any, SimpleNamespace(engines=[object()] * replicas))


def test_misses_go_to_the_smallest_tree_and_matches_over_the_threshold_stick() -> None:
    policy, p = CacheAwarePolicy(), pool()
    assert policy.pick(p, "1", PREFIX_A + " question one") == 0  # every tree empty: the first
    assert policy.pick(p, "2", PREFIX_B + " question two") == 1  # a miss: the smallest tree
    assert policy.pick(p, "3", PREFIX_A + " another question") == 0  # > 30% matched on 0
    assert policy.pick(p, "4", "c" * 4000) == 2
    assert policy.pick(p, "5", PREFIX_A[:1000] + "d" * 3000) == 1  # 25% matched: a miss, smallest tree (1 or 2)


def test_imbalanced_in_flight_counts_send_to_the_least_loaded() -> None:
    policy, p = CacheAwarePolicy(balance_abs=2, balance_rel=1.5), pool(2)
    for i in range(3):
        assert policy.pick(p, f"a{i}", PREFIX_A + str(i)) == 0  # affinity while loads are 0..2 vs 0
    assert policy.pick(p, "a3", PREFIX_A + "3") == 1  # 3 - 0 > 2 and 3 > 0 x 1.5: the least loaded
    for i in range(3):
        policy.done(f"a{i}")
    assert policy.pick(p, "a4", PREFIX_A + "4") == 0  # balanced again (0 vs 1): back to the longest match


def test_after_warm_up_leaves_out_the_first_fifth() -> None:
    result = ReplayResult("x", model_time=10.0)
    result.outcomes = [TurnOutcome(5.0, 100, 0, 0, 0, start=0.0), TurnOutcome(5.0, 100, 0, 0, 0, start=1.9),
                       TurnOutcome(0.1, 100, 0, 0, 0, start=2.0), TurnOutcome(0.2, 100, 0, 0, 0, start=9.0)]
    assert result.ttft(50) > 1.0
    assert result.ttft_after_warmup(100) == 0.2
