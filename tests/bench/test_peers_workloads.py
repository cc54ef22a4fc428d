"""The peer benchmark's workload generators: seeded, and shaped as documented."""

from __future__ import annotations

import pytest

from infergate.bench.peers.workloads import (
    CRITICAL,
    GENERATORS,
    PRIORITY_MIX_CAPACITY_PER_REPLICA,
    PRIORITY_MIX_INFLIGHT_AT_CAPACITY,
    SHEDDABLE,
    make,
    zipf_weights,
)


def _fingerprint(name: str, seed: int) -> list[tuple[float, str, tuple[str, ...], str | None, str | None]]:
    w = make(name, 60.0, seed)
    return [(s.at, s.prefix, tuple(t.text for t in s.turns), s.model, s.objective) for s in w.sessions]


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_every_workload_is_deterministic_by_seed(name: str) -> None:
    first = _fingerprint(name, 3)
    assert first and first == _fingerprint(name, 3)
    assert first != _fingerprint(name, 4)
    w = make(name, 60.0, 3)
    assert [s.at for s in w.sessions] == sorted(s.at for s in w.sessions)
    assert all(0 <= s.at < 60.0 for s in w.sessions)
    assert w.concurrency > 0 and w.pool.replicas == 4 and w.description


def test_closed_loop_gets_more_sessions_and_replicas_scale_the_rate() -> None:
    assert len(make("shared-prefix", 60.0, closed=True).sessions) > 4 * len(make("shared-prefix", 60.0).sessions)
    small, big = make("shared-prefix", 60.0, replicas=2), make("shared-prefix", 60.0, replicas=8)
    assert 3 * len(small.sessions) < len(big.sessions) and big.pool.replicas == 8
    with pytest.raises(KeyError, match="unknown workload"):
        make("nope", 1.0)


def test_shared_prefix_uniform_groups() -> None:
    w = make("shared-prefix", 120.0)
    assert 800 < w.requests < 1120  # Poisson 8/s
    prefixes = {s.group: s.prefix for s in w.sessions}
    assert len(prefixes) == 24 and len(set(prefixes.values())) == 24
    assert all(11_000 < len(p) < 13_000 for p in prefixes.values())  # ~3,000 tokens of 4 characters
    counts = [sum(1 for s in w.sessions if s.group == g) for g in range(24)]
    assert max(counts) < 3 * min(counts)
    assert all(len(s.turns) == 1 and s.turns[0].max_tokens == 64 for s in w.sessions)


def test_zipf_hottest_group_needs_more_than_one_replica() -> None:
    w = make("shared-prefix-zipf", 300.0)
    counts = [sum(1 for s in w.sessions if s.group == g) for g in range(16)]
    assert counts[0] == max(counts) and counts[0] > 0.3 * len(w.sessions)
    assert zipf_weights(16, 1.4)[0] > 0.35
    # the hottest group's uncached prefill (its ~2,000-token questions) on the a100 profile
    question_tokens = len(w.sessions[0].turns[0].text) / 4
    hot_rate = counts[0] / 300.0
    assert hot_rate * question_tokens * 0.000135 > 0.75  # most of one replica before decode and attention


def test_multi_turn_sessions_grow() -> None:
    w = make("multi-turn", 120.0)
    assert all(3 <= len(s.turns) <= 7 for s in w.sessions)
    s = w.sessions[0]
    first = s.prompt("", 0)
    assert first.startswith(s.prefix) and first.endswith(s.turns[0].text)
    history = first + " the answer"
    assert s.prompt(history, 1) == history + s.turns[1].text
    assert all(t.think_s > 0 for t in s.turns[1:]) and s.turns[0].think_s == 0


def test_lora_mix_pool_and_adapters() -> None:
    w = make("lora-mix", 120.0)
    assert w.pool.max_loras == 2 and len(w.pool.lora_adapters) == 8
    assert {s.model for s in w.sessions} == set(w.pool.lora_adapters)


def test_priority_mix_objectives() -> None:
    w = make("priority-mix", 120.0)
    assert dict(w.objectives) == {CRITICAL: 1, SHEDDABLE: -1}
    share = sum(1 for s in w.sessions if s.objective == CRITICAL) / len(w.sessions)
    assert 0.4 < share < 0.6
    # 1.5x the capacity measured for the cache-aware routers on this traffic (not round robin's)
    rate = 1.5 * PRIORITY_MIX_CAPACITY_PER_REPLICA * 4
    assert 0.85 * rate * 120 < len(w.sessions) < 1.15 * rate * 120
    assert f"Poisson {rate:g} req/s = 1.5x" in w.description
    assert all(3_600 < len(s.turns[0].text) < 4_400 for s in w.sessions)  # ~1,000-token questions
    assert w.concurrency == round(1.5 * PRIORITY_MIX_INFLIGHT_AT_CAPACITY * 4)


def test_bursty_has_idle_windows() -> None:
    w = make("bursty", 100.0)
    assert all(s.at % 10.0 < 5.0 for s in w.sessions)
    assert 700 < len(w.sessions) < 900  # 16/s for half of the 100 s


def test_heterogeneous_and_long_context() -> None:
    assert make("heterogeneous", 10.0).pool.slow_replicas == 2
    assert make("heterogeneous", 10.0, replicas=2).pool.slow_replicas == 1
    w = make("long-context", 300.0)
    lengths = [len(s.turns[0].text) / 4 for s in w.sessions]
    long = [n for n in lengths if n > 10_000]
    assert 0.12 < len(long) / len(lengths) < 0.28 and all(15_500 < n < 16_600 for n in long)
    assert all(n < 400 for n in lengths if n <= 10_000)
