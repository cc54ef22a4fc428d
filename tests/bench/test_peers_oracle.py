"""The oracle's prediction and choice on synthetic simulator states."""

from __future__ import annotations

import random
from typing import Any

from infergate.bench.peers.oracle import Pending, choose, common_prefix_tokens, predict_ttft
from infergate.sim.config import PROFILES

PROFILE = {k: v for k, v in vars(PROFILES["llama-3.1-8b-a100-40gb"]).items() if isinstance(v, int | float)}


def state(*, cached: int = 0, prompt: int = 3040, running: int = 0, waiting: list[tuple[int, int]] | None = None,
          free_blocks: int = 2500, lora: str | None = None, loaded: tuple[str, ...] = (),
          running_loras: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "profile": PROFILE, "block_size": 16, "max_num_batched_tokens": 8192, "max_num_seqs": 256, "max_loras": 2,
        "free_blocks": free_blocks, "loaded_loras": list(loaded), "running_loras": list(running_loras),
        "running": [{"prompt_tokens": 3040, "computed": 3060, "generated": 20, "max_output": 64,
                     "prefill_remaining": 0, "lora": None}] * running,
        "waiting": [{"prompt_tokens": p, "cached_tokens": c, "lora": None} for p, c in waiting or []],
        "request": {"prompt_tokens": prompt, "cached_tokens": cached, "lora": lora},
        "ready": True,
    }


def test_a_cached_prefix_wins_over_an_idle_cold_replica() -> None:
    hot = state(cached=3008, running=8)
    cold = state()
    assert predict_ttft(hot) < predict_ttft(cold)
    index, predictions = choose([cold, hot], [[], []], "p", random.Random(1))
    assert index == 1 and predictions[1] < 0.1 < predictions[0]


def test_a_long_queue_outweighs_the_cache() -> None:
    queued = state(cached=3008, waiting=[(16_000, 0)] * 4)  # 64k tokens of prefill ahead
    idle = state()
    index, _ = choose([queued, idle], [[], []], "p", random.Random(1))
    assert index == 1


def test_pending_picks_count_as_queued_work_and_as_cache() -> None:
    a, b = state(), state()
    prompt = "x" * 12_000 + "question"
    # a request with the same prefix already sent to replica 0 will have computed it
    pending = [[Pending("x" * 12_000 + "other", 3000)], []]
    index, predictions = choose([a, b], pending, prompt, random.Random(1))
    assert index == 0 and predictions[0] < predictions[1] * 1.5
    # unrelated pending work makes replica 0 the worse one
    index, _ = choose([state(), state()], [[Pending("y" * 12_000, 3000)] * 3, []], prompt, random.Random(1))
    assert index == 1
    assert common_prefix_tokens("a" * 200, "a" * 130 + "b") == 32  # 32 whole tokens = 2 blocks of 16


def test_lora_slots_and_not_ready_replicas() -> None:
    loaded = state(prompt=300, lora="a1", loaded=("a1", "a2"), running_loras=("a1", "a2"), running=2)
    busy_slots = state(prompt=300, lora="a1", loaded=("a3", "a4"), running_loras=("a3", "a4"), running=2)
    assert predict_ttft(loaded) < predict_ttft(busy_slots)
    down = {"ready": False}
    index, predictions = choose([down, state()], [[], []], "p", random.Random(1))
    assert index == 1 and predictions[0] == float("inf")


def test_kv_shortage_adds_a_wait() -> None:
    assert predict_ttft(state(free_blocks=10, running=4)) > predict_ttft(state(running=4)) + 0.1
