"""The floor under every router's time to first token on a peer-benchmark workload (``bench.peers.floor``)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from infergate.bench.peers import stored
from infergate.bench.peers.floor import (
    WAVE_SPREAD_S,
    closed_loop_floor,
    closed_loop_p90_floor,
    fastest_profile,
    phase_floors,
    prefill_time,
    ttft_floor,
)
from infergate.bench.peers.replay import replay
from infergate.bench.peers.workloads import CRITICAL, SHEDDABLE, PoolSpec, Session, Turn, Workload, make
from infergate.bench.stats import percentile
from infergate.sim.config import PROFILES
from infergate.sim.latency import StepShape, step_time
from infergate.sim.tokenizer import count_tokens

PROFILE = PROFILES["llama-3.1-8b-a100-40gb"]
PREFIX = "System prompt. " + "x" * 12_000  # ~3,000 tokens, 187 whole blocks of 64 characters


def _workload(*sessions: Session, pool: PoolSpec | None = None,
              objectives: tuple[tuple[str, int], ...] = ()) -> Workload:
    return Workload("test", "test", tuple(sessions), 1, pool or PoolSpec(), objectives)


def _one(at: float, text: str = "\nQuestion: why?", prefix: str = PREFIX, model: str | None = None,
         objective: str | None = None) -> Session:
    return Session(at, prefix, (Turn(text, 8),), model=model, objective=objective)


def test_prefill_time_is_the_step_models_chunked_prefill() -> None:
    """The closed form (steps, tokens, causal-attention pairs) is what the simulator's steps add up to
    when the prompt is computed alone, chunk by chunk under the token budget."""
    for uncached, cached in ((3_000, 0), (20_000, 0), (5_000, 4_096), (1, 3_008)):
        total, prior, left = 0.0, cached, uncached
        while left:
            chunk = min(left, PROFILE.max_num_batched_tokens)
            shape = StepShape()
            shape.add_prefill(chunk, prior)
            total += step_time(PROFILE, shape)
            prior += chunk
            left -= chunk
        assert prefill_time(PROFILE, uncached, cached) == pytest.approx(total)


def test_a_cold_prompt_needs_its_whole_prefill_and_a_later_one_only_its_own_blocks() -> None:
    floor = ttft_floor(_workload(_one(0.0), _one(10.0)), jitter_sigmas=0.0)
    tokens = count_tokens(PREFIX + "\nQuestion: why?")
    cached = (len(PREFIX) // 64) * 16  # the prefix's whole blocks; the block with the question is new
    assert floor.step_factor == 1.0
    assert floor.ttfts[0] == pytest.approx(PROFILE.request_overhead_s + prefill_time(PROFILE, tokens, 0))
    assert floor.ttfts[1] == pytest.approx(PROFILE.request_overhead_s + prefill_time(PROFILE, tokens - cached, cached))
    assert floor.ttfts[0] > 0.4 and floor.ttfts[1] < 0.03


def test_a_second_request_while_the_first_is_prefilling_waits_for_the_rest_of_the_prefix() -> None:
    """0.1 s after the first request, at most 0.1 s worth of its prefix exists anywhere: the second
    request, wherever it goes, still has the rest to compute (or to wait for)."""
    gap = 0.1
    floor = ttft_floor(_workload(_one(0.0), _one(gap)), jitter_sigmas=0.0)
    tokens = count_tokens(PREFIX + "\nQuestion: why?")
    computable = (gap - PROFILE.request_overhead_s) / PROFILE.per_prefill_token_s
    cached = int(computable // 16) * 16
    assert floor.ttfts[1] == pytest.approx(PROFILE.request_overhead_s + prefill_time(PROFILE, tokens - cached, cached))
    assert 0.25 < floor.ttfts[1] < floor.ttfts[0] - gap + 0.02


def test_adapters_do_not_share_blocks_and_jitter_makes_steps_faster() -> None:
    sessions = (_one(0.0, model="adapter-0"), _one(10.0, model="adapter-1"), _one(20.0, model="adapter-0"))
    floor = ttft_floor(_workload(*sessions), jitter_sigmas=0.0)
    assert floor.ttfts[1] == pytest.approx(floor.ttfts[0], rel=1e-3)  # another adapter's blocks: cold again
    assert floor.ttfts[2] < 0.03
    fast = ttft_floor(_workload(*sessions))  # three standard deviations of the profile's 5% jitter
    assert fast.step_factor == pytest.approx(0.85)
    assert fast.ttfts[0] == pytest.approx(PROFILE.request_overhead_s + 0.85 * (floor.ttfts[0] - PROFILE.request_overhead_s))


def test_objectives_measure_the_critical_requests_and_later_turns_their_new_text() -> None:
    priority = _workload(_one(0.0, objective=SHEDDABLE), _one(10.0, objective=CRITICAL),
                         objectives=((CRITICAL, 1), (SHEDDABLE, -1)))
    floor = ttft_floor(priority, jitter_sigmas=0.0)
    assert len(floor.ttfts) == 1 and floor.requests == 2
    assert floor.ttfts[0] < 0.03  # the sheddable request before it could have cached the prefix
    chat = Session(0.0, PREFIX, (Turn("\nUser: hi", 8), Turn("\nUser: " + "y" * 4_000, 8, think_s=1.0)))
    turns = ttft_floor(_workload(chat), jitter_sigmas=0.0).ttfts
    new_tokens = 4_007 // 4 - 1
    assert turns[1] == pytest.approx(PROFILE.request_overhead_s + prefill_time(PROFILE, new_tokens, 16))


def test_the_slow_replicas_of_a_heterogeneous_pool_do_not_raise_the_floor() -> None:
    workload = make("heterogeneous", 5.0, 1, 4)
    assert fastest_profile(workload) == PROFILE
    same_traffic = dataclasses.replace(workload, pool=PoolSpec())
    assert ttft_floor(workload).ttfts == ttft_floor(same_traffic).ttfts


@pytest.mark.parametrize("name", ["shared-prefix", "long-context", "lora-mix", "bursty"])
def test_no_request_of_a_replay_beats_its_floor(name: str) -> None:
    """The replay's engines are the simulator's (with its step jitter) without the API server's
    overhead; every policy's every request takes at least its floor less that overhead, and so every
    percentile is at least the floor's."""
    workload = make(name, 8.0, 2, 4)
    floor = ttft_floor(workload)
    assert floor.requests == workload.requests == len(floor.ttfts)
    starts = sorted(range(len(workload.sessions)), key=lambda i: workload.sessions[i].at)
    for policy in ("default", "oracle", "sglang-cache-aware"):
        result = replay(workload, policy, 2)
        outcomes = sorted(result.outcomes, key=lambda o: o.start)
        assert len(outcomes) == len(starts)
        for outcome, least in zip(outcomes, floor.ttfts, strict=True):
            assert outcome.ttft >= least - PROFILE.request_overhead_s - 1e-9, (policy, outcome, least)
        assert result.ttft(90) >= percentile([t - PROFILE.request_overhead_s for t in floor.ttfts], 90) - 1e-9


def test_the_floor_is_kept_only_for_runs_of_the_same_traffic() -> None:
    workload = make("shared-prefix", 30.0, 1, 4)
    floors = phase_floors("shared-prefix", "open", {1: [workload.requests, workload.requests], 2: []}, 30.0, 4)
    assert list(floors) == [1]
    assert floors[1] == pytest.approx(ttft_floor(workload).percentile(90))
    assert 0.25 < floors[1] < 0.45  # the cold system prompts and the requests that arrive while they prefill
    assert phase_floors("shared-prefix", "open", {1: [workload.requests + 1]}, 30.0, 4) == {}  # other traffic
    assert math.isfinite(phase_floors("long-context", "open", {1: [make("long-context", 30.0, 1, 4).requests]},
                                      30.0, 4)[1])


def test_a_closed_loops_first_wave_is_cold_and_later_requests_keep_only_what_is_their_own() -> None:
    """Both users send at t = 0: the second request for the same system prompt finds at most what the
    first computed within the wave's spread. The third session arrives whenever the router lets it:
    only its own question is left, unless it is a document no earlier request had."""
    wave = (_one(0.0), _one(0.0, text="\nQuestion: how?"), _one(0.0, text="\nQuestion: who?"))
    later = (_one(0.0, text="\nQuestion: when?"), _one(0.0, prefix="", text="Document. " + "z" * 8_000))
    workload = dataclasses.replace(_workload(*wave, *later), concurrency=3)
    floor = closed_loop_floor(workload, jitter_sigmas=0.0)
    tokens = count_tokens(PREFIX + "\nQuestion: why?")
    assert floor.ttfts[0] == pytest.approx(PROFILE.request_overhead_s + prefill_time(PROFILE, tokens, 0))
    computable = (WAVE_SPREAD_S - PROFILE.request_overhead_s) / PROFILE.per_prefill_token_s
    cached = int(computable // 16) * 16
    assert floor.ttfts[1] == pytest.approx(PROFILE.request_overhead_s + prefill_time(PROFILE, tokens - cached, cached))
    # the third finds no more than the second: neither computes past blocks before they exist
    assert floor.ttfts[2] == pytest.approx(floor.ttfts[1])
    assert floor.ttfts[3] < 0.03
    document = count_tokens("Document. " + "z" * 8_000)
    assert floor.ttfts[4] == pytest.approx(PROFILE.request_overhead_s + prefill_time(PROFILE, document, 0))
    assert closed_loop_p90_floor(floor, 2) == pytest.approx(percentile(list(floor.ttfts[:2]), 90))
    with pytest.raises(ValueError, match="objectives"):
        closed_loop_floor(make("priority-mix", 5.0, closed=True))


@pytest.mark.parametrize("name", ["long-context", "shared-prefix", "multi-turn"])
def test_no_closed_loop_replay_beats_its_floor(name: str) -> None:
    """The replay's users take the sessions in order, as the driver's: a single-turn loop serves the
    first N sessions, each request at least its floor (sorted against sorted), and every loop's p90 is
    at least the floor's for the count it served."""
    workload = make(name, 10.0, 1, 4, closed=True)
    floor = closed_loop_floor(workload)
    overhead = PROFILE.request_overhead_s
    for policy in ("default", "oracle"):
        result = replay(workload, policy, 1, 10.0)
        served = len(result.outcomes)
        assert result.ttft(90) >= closed_loop_p90_floor(floor, served) - overhead - 1e-9, policy
        if name != "multi-turn":  # a user stops between turns at the deadline: the served set is not a prefix
            got = sorted(o.ttft for o in result.outcomes)
            least = sorted(t - overhead for t in floor.ttfts[:served])
            assert all(a >= b - 1e-9 for a, b in zip(got, least, strict=True)), policy
    phases = phase_floors(name, "closed", {1: [served, served + 3]}, 10.0, 4)
    assert phases[1] == pytest.approx(min(closed_loop_p90_floor(floor, n) for n in range(served, served + 4)))


def test_no_router_of_the_checked_in_full_run_beat_its_floor() -> None:
    """Live figures: every router's whole-phase TTFT p90 in session 23's first full run (Envoy, the
    simulators over HTTP, the real peers) is at least the floor the report computes for its phase."""
    result = stored.load(Path(__file__).parents[2] / "bench/results/peers/full-s23-a")
    cfg = result.config
    checked = 0
    for key, runs in result.by_phase().items():
        workload, _, phase = key.partition("/")
        counts = [r.summary.requests for r in runs if r.summary is not None]
        floors = phase_floors(workload, phase, {cfg.seed: counts}, cfg.duration * cfg.time_scale, cfg.replicas)
        for run in runs:
            if run.summary is not None and cfg.seed in floors:
                assert run.summary.ttft_p90 >= floors[cfg.seed], (key, run.router)
                checked += 1
    assert checked >= 50  # 15 phases with a floor (not priority-mix/closed), 4 routers each
