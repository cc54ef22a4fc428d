"""A floor under every router's time to first token on an open-loop workload.

An open loop's requests arrive at planned times, whatever the router does, and the simulator's
step-time model (``infergate.sim.latency``) says how fast any replica can compute a prompt. So
each request has a time to first token that no schedule can beat, even one that knew the future:

- it waits the simulator's per-request API overhead, then needs at least the steps that compute
  its uncached prompt tokens on an otherwise idle replica of the pool's fastest profile
  (``ceil(u / max_num_batched_tokens)`` steps; ``u`` tokens at ``per_prefill_token_s``; the
  causal-attention pairs ``c * u + u**2 / 2`` after ``c`` cached tokens, however the prompt is
  chunked);
- its cached tokens are at most the whole blocks of its prompt that an EARLIER request could
  have computed by its arrival, on any replica: a request computes its uncached tokens no faster
  than ``per_prefill_token_s`` each from its own arrival, starting from what it could have found
  cached itself. A second request for a system prompt whose first request arrived 0.1 s earlier
  still has the rest of that prompt to wait for, on whatever replica it goes to. Nothing is ever
  evicted, and every block is everywhere the request could use it.
- A later turn of a chat (``multi-turn``) has everything before its own new text cached.

Every step is taken ``JITTER_SIGMAS`` standard deviations of the profile's step-time jitter
faster than its model time (the simulator draws each step's factor from a normal distribution
around 1); router, network and queueing cost nothing. The floor's TTFT p90 is then a lower bound
of any router's TTFT p90 on that traffic: every request's figure is at least its floor, and a
percentile cannot fall below the same percentile of values that are each smaller.

Closed loops have no floor here: their requests' times depend on the router's earlier answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from infergate.bench.peers.workloads import CRITICAL, SLOW_PROFILE_SETTINGS, Workload, make
from infergate.bench.stats import percentile
from infergate.sim.config import PROFILES, LatencyProfile
from infergate.sim.tokenizer import CHARS_PER_TOKEN, block_hashes, count_tokens

JITTER_SIGMAS: Final = 3.0
BLOCK_SIZE: Final = 16  # the simulator's (and vLLM's) default KV block size, as the benchmark runs it
BASE_MODEL: Final = ""  # the prefix-cache namespace of requests without a LoRA adapter


@dataclass(frozen=True)
class TtftFloor:
    """Per measured request (model seconds, in arrival order), the least time to first token any
    router could give it; ``step_factor``: the factor each step's model time was taken at."""

    workload: str
    ttfts: tuple[float, ...]
    step_factor: float
    requests: int  # every request of the open loop, measured or not (a run's ``Summary.requests``)

    def percentile(self, q: float) -> float:
        return percentile(list(self.ttfts), q)


def fastest_profile(workload: Workload) -> LatencyProfile:
    """The pool's profile with each cost the least of its fast and slow replicas' (a lower bound for both)."""
    profile = PROFILES[workload.pool.profile]
    if not workload.pool.slow_replicas:
        return profile
    slow = {k: float(v) for k, _, v in (s.partition("=") for s in SLOW_PROFILE_SETTINGS)}
    return replace(profile, **{k: min(getattr(profile, k), v) for k, v in slow.items()})


def prefill_time(profile: LatencyProfile, uncached: int, cached: int) -> float:
    """Model seconds of the steps that compute ``uncached`` prompt tokens after ``cached`` ones, alone
    on a replica (no jitter): the step-time model's terms for those tokens, in as few steps as its token
    budget allows."""
    steps = max(1, math.ceil(uncached / profile.max_num_batched_tokens))
    pairs = cached * uncached + uncached * uncached / 2
    return (steps * (profile.step_base_s + profile.per_seq_s) + profile.per_prefill_token_s * uncached
            + profile.attention_s * pairs)


def ttft_floor(workload: Workload, *, jitter_sigmas: float = JITTER_SIGMAS,
               block_size: int = BLOCK_SIZE) -> TtftFloor:
    """The floor of every measured request of ``workload``'s open loop (with objectives: the
    critical requests', as the benchmark's summaries measure)."""
    profile = fastest_profile(workload)
    factor = max(0.5, 1.0 - jitter_sigmas * profile.jitter)  # the simulator clamps a step's factor at 0.5
    per_token = profile.per_prefill_token_s * factor
    ready: dict[int, float] = {}  # chained block hash -> the earliest time any replica could hold it
    floors: list[float] = []
    for session in sorted(workload.sessions, key=lambda s: s.at):
        namespace = session.model or BASE_MODEL
        measured = not workload.objectives or session.objective in (None, CRITICAL)
        for index, turn in enumerate(session.turns):
            if index:  # a later turn: all but its own new text may be cached
                uncached = max(1, len(turn.text) // CHARS_PER_TOKEN - 1)
                tokens = uncached + block_size  # some history before it (only the attention term reads this)
                cached = tokens - uncached
            else:
                prompt = session.prompt("", 0)
                tokens = count_tokens(prompt)
                hashes = block_hashes(prompt, block_size, namespace)
                lookup = (tokens - 1) // block_size  # the simulator (as vLLM) recomputes at least the last token
                hit = 0
                while hit < min(lookup, len(hashes)) and ready.get(hashes[hit], math.inf) <= session.at:
                    hit += 1
                cached = hit * block_size
                uncached = tokens - cached
                start = session.at + profile.request_overhead_s
                for k in range(hit, len(hashes)):  # this request's blocks, computed no faster than per_token each
                    done = start + per_token * ((k + 1) * block_size - cached)
                    if done < ready.get(hashes[k], math.inf):
                        ready[hashes[k]] = done
            if measured:
                floors.append(profile.request_overhead_s + factor * prefill_time(profile, uncached, cached))
    return TtftFloor(workload.name, tuple(floors), factor, workload.requests)


def open_loop_floors(workload: str, runs_by_seed: Mapping[int, Sequence[int]], model_duration: float,
                     replicas: int) -> dict[int, float]:
    """Seed -> the floor under any router's TTFT p90 on ``workload``'s open loop, for the repeats whose
    routers measured as many requests as that traffic has today (``runs_by_seed``: each repeat's
    routers' request counts). A stored run whose traffic differs from today's generator (another
    count) gets no floor."""
    out: dict[int, float] = {}
    for seed, counts in runs_by_seed.items():
        if not counts:
            continue
        floor = ttft_floor(make(workload, model_duration, seed, replicas))
        if all(count == floor.requests for count in counts):
            out[seed] = floor.percentile(90)
    return out
