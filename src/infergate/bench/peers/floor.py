"""A floor under every router's time to first token on a peer-benchmark workload.

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
  than ``per_prefill_token_s`` each from its own arrival, and not past the blocks it found cached
  before they exist. A second request for a system prompt whose first request arrived 0.1 s earlier
  still has the rest of that prompt to wait for, on whatever replica it goes to. Nothing is ever
  evicted, and every block is everywhere the request could use it.
- A later turn of a chat (``multi-turn``) has everything before its own new text cached.

Every step is taken ``JITTER_SIGMAS`` standard deviations of the profile's step-time jitter
faster than its model time (the simulator draws each step's factor from a normal distribution
around 1); router, network and queueing cost nothing. The floor's TTFT p90 is then a lower bound
of any router's TTFT p90 on that traffic: every request's figure is at least its floor, and a
percentile cannot fall below the same percentile of values that are each smaller.

A closed loop's requests arrive when the router's earlier answers let them, so its floor
(``closed_loop_floor``) keeps only what holds whatever the router does: the first wave (every user
sends at once, when nothing is cached; each may reach a replica up to ``WAVE_SPREAD_S`` later),
and the part of each later request that no earlier request has (a unique document). Its users
take the sessions in order, so a loop that served N requests served the first N; the report takes
the least floor over the counts the run's routers served (a router that served many more requests
than any of them would have a lower one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from infergate.bench.peers.run import PeersConfig, RunOutcome
from infergate.bench.peers.workloads import CRITICAL, Session, Workload, make, slow_profile_overrides
from infergate.bench.stats import percentile
from infergate.sim.config import PROFILES, LatencyProfile
from infergate.sim.tokenizer import CHARS_PER_TOKEN, block_hashes, count_tokens

JITTER_SIGMAS: Final = 3.0
# a closed loop's first wave starts its requests' clocks within this many model seconds (the driver starts
# every user at once: 32 users' first turns took 33-42 ms of wall time on an idle machine; 25 ms of model
# time is 100 ms of wall time at the benchmark's 0.25 time scale). A request held longer than that by its
# router finds more cached, but its own clock ran meanwhile: it gains no more than it waited.
WAVE_SPREAD_S: Final = 0.025
BLOCK_SIZE: Final = 16  # the simulator's (and vLLM's) default KV block size, as the benchmark runs it
BASE_MODEL: Final = ""  # the prefix-cache namespace of requests without a LoRA adapter


@dataclass(frozen=True)
class TtftFloor:
    """Per measured request (model seconds, in arrival order), the least time to first token any
    router could give it; ``step_factor``: the factor each step's model time was taken at."""

    workload: str
    ttfts: tuple[float, ...]
    step_factor: float
    requests: int  # every request of the traffic, measured or not (an open loop's ``Summary.requests``)

    def percentile(self, q: float) -> float:
        return percentile(list(self.ttfts), q)


def fastest_profile(workload: Workload) -> LatencyProfile:
    """The pool's profile with each cost the least of its fast and slow replicas' (a lower bound for both)."""
    profile = PROFILES[workload.pool.profile]
    if not workload.pool.slow_replicas:
        return profile
    return replace(profile, **{k: min(getattr(profile, k), v) for k, v in slow_profile_overrides().items()})


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
    critical requests', as the benchmark's summaries measure), in arrival order."""
    ordered = sorted(workload.sessions, key=lambda s: s.at)
    return _floor(workload, [(s, s.at) for s in ordered], jitter_sigmas, block_size)


def closed_loop_floor(workload: Workload, *, jitter_sigmas: float = JITTER_SIGMAS, block_size: int = BLOCK_SIZE,
                      wave_spread: float = WAVE_SPREAD_S) -> TtftFloor:
    """The floor of ``workload``'s closed-loop requests in the order its users take them (sessions in
    order, each session's turns in order; ``closed_loop_p90_floor`` keeps the first ones served).

    A closed loop's arrivals depend on the router's answers, except its first wave: all
    ``concurrency`` users send their first session's first turn at once, when nothing is cached
    anywhere. Each is taken to arrive ``wave_spread`` after the first of them began computing: a
    second request for the same prefix finds what the first could have computed by then. Every
    other request is taken to arrive after every earlier one (users take sessions in order) had
    all its blocks computed: only what no earlier request has (its own question, a document) is
    left to compute. Not for workloads with objectives (each objective's users take their own
    sessions)."""
    if workload.objectives:
        raise ValueError(f"{workload.name}: a closed loop with objectives has no floor here")
    wave = {id(s) for s in workload.sessions[: workload.concurrency]}
    return _floor(workload, [(s, 0.0 if id(s) in wave else None) for s in workload.sessions], jitter_sigmas,
                  block_size, wave_spread)


def _floor(workload: Workload, arrivals: list[tuple[Session, float | None]], jitter_sigmas: float,
           block_size: int, lookup_delay: float = 0.0) -> TtftFloor:
    """Per measured turn of the sessions, in order: ``arrivals`` gives each session's first turn's arrival
    (model seconds), or None where it is unknown (after every earlier request's blocks were computed).
    A request computes from its arrival but looks up the cache ``lookup_delay`` later (a closed loop's
    wave: the latest it may reach a replica)."""
    profile = fastest_profile(workload)
    factor = max(0.5, 1.0 - jitter_sigmas * profile.jitter)  # the simulator clamps a step's factor at 0.5
    per_token = profile.per_prefill_token_s * factor
    ready: dict[int, float] = {}  # chained block hash -> the earliest time any replica could hold it
    floors: list[float] = []
    for session, at in arrivals:
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
                by = math.inf if at is None else at + lookup_delay
                hit = 0
                while hit < min(lookup, len(hashes)) and hashes[hit] in ready and ready[hashes[hit]] <= by:
                    hit += 1
                cached = hit * block_size
                uncached = tokens - cached
                # it computes from its arrival, and not past its cached blocks before they exist
                start = -math.inf if at is None else max(at + profile.request_overhead_s,
                                                         ready[hashes[hit - 1]] if hit else -math.inf)
                for k in range(hit, len(hashes)):  # this request's blocks, computed no faster than per_token each
                    done = start + per_token * ((k + 1) * block_size - cached)
                    if done < ready.get(hashes[k], math.inf):
                        ready[hashes[k]] = done
            if measured:
                floors.append(profile.request_overhead_s + factor * prefill_time(profile, uncached, cached))
    return TtftFloor(workload.name, tuple(floors), factor, workload.requests)


def closed_loop_p90_floor(floor: TtftFloor, served: int) -> float:
    """The TTFT p90 floor of a closed loop that served its first ``served`` requests."""
    return percentile(list(floor.ttfts[:served]), 90)


def phase_floors(workload: str, phase: str, counts_by_seed: Mapping[int, Sequence[int]], model_duration: float,
                 replicas: int) -> dict[int, float]:
    """Seed -> the floor under any router's TTFT p90 on ``workload``'s phase, for each repeat with
    request counts (``counts_by_seed``: each repeat's routers' ``Summary.requests``).

    Open loop: only where every router measured as many requests as that traffic has today (a
    stored run of other traffic gets none). Closed loop: the least floor over the counts the routers
    served, from the fewest to the most (the floor for any router serving as many requests as one of
    them did); none for workloads with objectives."""
    out: dict[int, float] = {}
    for seed, counts in counts_by_seed.items():
        if not counts:
            continue
        if phase == "open":
            floor = ttft_floor(make(workload, model_duration, seed, replicas))
            if all(count == floor.requests for count in counts):
                out[seed] = floor.percentile(90)
        elif phase == "closed":
            traffic = make(workload, model_duration, seed, replicas, closed=True)
            if traffic.objectives or max(counts) > traffic.requests:
                continue
            # the first max(counts) sessions hold at least the requests served (each has a turn or more)
            floor = closed_loop_floor(replace(traffic, sessions=traffic.sessions[: max(counts)]))
            out[seed] = min(closed_loop_p90_floor(floor, n) for n in range(min(counts), max(counts) + 1))
    return out


def run_floors(config: PeersConfig, key: str, runs_by_seed: Mapping[int, Sequence[RunOutcome]]) -> dict[int, float]:
    """``phase_floors`` for a stored run's workload/phase ``key``: seed -> floor, from each repeat's
    routers' request counts and the run's model duration and replicas."""
    workload, _, phase = key.partition("/")
    counts = {seed: [r.summary.requests for r in runs if r.summary is not None] for seed, runs in runs_by_seed.items()}
    return phase_floors(workload, phase, counts, config.duration * config.time_scale, config.replicas)
