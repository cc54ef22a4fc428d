"""The peer benchmark's workloads: seeded request sessions and the pool each needs.

A workload is a list of *sessions*; a session is one or more turns sent one after the
other (a single request for most workloads, a growing chat for ``multi-turn``). Turn ``i``'s
prompt is the session's prefix, then every earlier turn's text and answer, then its own text.
Arrival times are in model seconds (the driver divides them by the time scale). The same
(name, duration, seed, replicas) gives the same sessions, so every router sees identical
traffic. Prompts are built at send time from shared prefix strings, so long runs stay small.

Rates are chosen near round robin's saturation on the default pool (4 simulated
``llama-3.1-8b-a100-40gb`` replicas with 2,500 KV blocks each) and scale with the replica count.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from infergate.bench.workload import text_of_tokens as _text

CRITICAL = "critical"
SHEDDABLE = "sheddable"
SLOW_PROFILE_SETTINGS = ("step_base_s=0.028", "per_seq_s=0.0002", "per_prefill_token_s=0.00027",
                         "attention_s=0.000000009")  # twice the a100 profile's step time


def slow_profile_overrides() -> dict[str, float]:
    """``SLOW_PROFILE_SETTINGS`` (``name=value``, as ``infergate sim --set`` takes them) as profile overrides."""
    return {name: float(value) for name, value in (setting.split("=", 1) for setting in SLOW_PROFILE_SETTINGS)}


@dataclass(frozen=True)
class Turn:
    text: str  # appended to the history (the first turn's follows the session prefix)
    max_tokens: int
    think_s: float = 0.0  # model seconds between the previous answer and this turn


@dataclass(frozen=True)
class Session:
    at: float  # open loop: model seconds after the start
    prefix: str  # shared text (a system prompt) or ""
    turns: tuple[Turn, ...]
    group: int = 0
    model: str | None = None  # a LoRA adapter, None = the base model
    objective: str | None = None  # InferenceObjective name (x-gateway-inference-objective)

    def prompt(self, history: str, turn: int) -> str:
        return (self.prefix if turn == 0 else history) + self.turns[turn].text


@dataclass(frozen=True)
class PoolSpec:
    """The simulated pool: ``replicas`` of ``profile``; the last ``slow_replicas`` of them slower."""

    replicas: int = 4
    profile: str = "llama-3.1-8b-a100-40gb"
    num_gpu_blocks: int = 2500
    slow_replicas: int = 0
    lora_adapters: tuple[str, ...] = ()
    max_loras: int = 1

    def declared_labels(self, slow_factor: float | None) -> tuple[dict[str, str], ...]:
        """The replicas' pod labels, in order (the fast ones, then the slow ones): with
        ``slow_factor``, the slow replicas declare it (``infergate.io/speed-factor``), as an operator
        who knows the pool's hardware would label them; else none (an empty tuple)."""
        from infergate.epp.scheduling.plugins.inflight import DEFAULT_SPEED_FACTOR_LABEL

        if slow_factor is None or not self.slow_replicas:
            return ()
        fast = self.replicas - self.slow_replicas
        return tuple({} if i < fast else {DEFAULT_SPEED_FACTOR_LABEL: f"{slow_factor:g}"} for i in range(self.replicas))


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    sessions: tuple[Session, ...]  # open loop (by ``at``); the closed loop takes them in order
    concurrency: int  # closed-loop users
    pool: PoolSpec = field(default_factory=PoolSpec)
    objectives: tuple[tuple[str, int], ...] = ()  # (name, priority) served by the EPP

    @property
    def requests(self) -> int:
        return sum(len(s.turns) for s in self.sessions)


def _poisson(rng: random.Random, rate: float, duration: float) -> list[float]:
    times: list[float] = []
    at = rng.expovariate(rate)
    while at < duration:
        times.append(at)
        at += rng.expovariate(rate)
    return times


def _prompts(rng: random.Random, count: int, tokens: int, label: str) -> list[str]:
    return [f"{label} {g}. You are assistant {g}. " + _text(rng, tokens) for g in range(count)]


def _question(rng: random.Random, n: int, tokens: int) -> str:
    return f"\nQuestion {n}: " + _text(rng, tokens) + "?\nAnswer:"


def zipf_weights(groups: int, s: float) -> list[float]:
    raw = [1.0 / (k + 1) ** s for k in range(groups)]
    total = sum(raw)
    return [w / total for w in raw]


def _single(rng: random.Random, times: list[float], prefixes: list[str], weights: list[float] | None,
            question_tokens: int, max_tokens: int, **extra: object) -> list[Session]:
    sessions: list[Session] = []
    groups = range(len(prefixes))
    for n, at in enumerate(times):
        g = rng.choices(groups, weights)[0] if weights else rng.randrange(len(prefixes))
        sessions.append(Session(at, prefixes[g], (Turn(_question(rng, n, question_tokens), max_tokens),),
                                group=g, **extra))  # type: ignore[arg-type]
    return sessions


def shared_prefix(duration: float, seed: int, replicas: int) -> Workload:
    rng = random.Random(seed)
    prefixes = _prompts(random.Random(seed * 7919), 24, 3000, "System prompt")
    sessions = _single(rng, _poisson(rng, 2.0 * replicas, duration), prefixes, None, 40, 64)
    return Workload("shared-prefix", "24 system prompts of ~3,000 tokens (uniform), ~40-token questions, "
                    f"64 output tokens, Poisson {2.0 * replicas:g} req/s", tuple(sessions), 8 * replicas)


def shared_prefix_zipf(duration: float, seed: int, replicas: int) -> Workload:
    rng = random.Random(seed + 1)
    prefixes = _prompts(random.Random(seed * 7919 + 1), 16, 3000, "System prompt")
    weights = zipf_weights(16, 1.4)
    rate = 2.0 * replicas
    sessions = _single(rng, _poisson(rng, rate, duration), prefixes, weights, 2000, 64)
    return Workload("shared-prefix-zipf", "16 system prompts of ~3,000 tokens, Zipf s=1.4 (hottest group "
                    f"{weights[0]:.0%} of traffic), ~2,000-token questions so the hottest group's prefill "
                    f"alone needs about one replica, 64 output tokens, Poisson {rate:g} req/s",
                    tuple(sessions), 8 * replicas)


def multi_turn(duration: float, seed: int, replicas: int) -> Workload:
    rng = random.Random(seed + 2)
    prefixes = _prompts(random.Random(seed * 7919 + 2), 8, 1000, "Persona")
    rate = 0.4 * replicas  # sessions per second; ~5 turns each
    sessions = []
    for n, at in enumerate(_poisson(rng, rate, duration)):
        g = rng.randrange(len(prefixes))
        turns = tuple(Turn(f"\nUser turn {t} of chat {n}: " + _text(rng, rng.randint(60, 200)) + "\nAssistant:",
                           rng.choice((64, 96, 128)), 0.0 if t == 0 else rng.uniform(1.0, 3.0))
                      for t in range(rng.randint(3, 7)))
        sessions.append(Session(at, prefixes[g], turns, group=g))
    return Workload("multi-turn", f"chat sessions (3-7 turns, 1-3 s think time) on 8 ~1,000-token personas, "
                    f"history grows turn by turn, Poisson {rate:g} sessions/s", tuple(sessions), 8 * replicas)


def lora_mix(duration: float, seed: int, replicas: int) -> Workload:
    rng = random.Random(seed + 3)
    adapters = tuple(f"adapter-{i}" for i in range(8))
    prefixes = _prompts(random.Random(seed * 7919 + 3), 8, 1000, "Adapter task")
    rate = 2.0 * replicas
    sessions = []
    weights = zipf_weights(8, 0.8)
    for n, at in enumerate(_poisson(rng, rate, duration)):
        a = rng.choices(range(8), weights)[0]
        sessions.append(Session(at, prefixes[a], (Turn(_question(rng, n, 200), 64),), group=a, model=adapters[a]))
    return Workload("lora-mix", f"8 LoRA adapters (Zipf s=0.8), 2 adapter slots per replica, ~1,000-token "
                    f"task prompt per adapter, ~200-token questions, Poisson {rate:g} req/s", tuple(sessions),
                    8 * replicas, PoolSpec(replicas=replicas, lora_adapters=adapters, max_loras=2))


# priority-mix's calibration (docs/bench.md, "priority-mix"): vllm-router cache_aware on this traffic,
# open loop, requests after a 7.5 s warm-up, time scale 0.25: 2.5 req/s per replica kept 90% of the
# requests within the SLO (TTFT p90 0.46 s), 3.5 only 45% (TTFT p90 2.4 s)
PRIORITY_MIX_CAPACITY_PER_REPLICA = 2.5
PRIORITY_MIX_INFLIGHT_AT_CAPACITY = 4.5  # requests in flight per replica there (rate x E2E p50 1.8 s)
PRIORITY_MIX_LOAD = 1.5  # times that capacity
PRIORITY_MIX_QUESTION_TOKENS = 1000


def priority_mix(duration: float, seed: int, replicas: int, *, load: float | None = None,
                 question_tokens: int = PRIORITY_MIX_QUESTION_TOKENS) -> Workload:
    """Overload with two priorities. The rate is ``load`` x the capacity measured for the good
    (cache-aware) routers on this traffic, not round robin's: they serve every question from a
    cached system prompt, so shared-prefix's rates never saturate them. ~1,000-token questions
    (a pasted document) make each request's own prefill the work that fills a replica, at
    rates the load generator can drive at the bench's time scale."""
    rng = random.Random(seed + 4)
    prefixes = _prompts(random.Random(seed * 7919 + 4), 24, 3000, "System prompt")
    load = PRIORITY_MIX_LOAD if load is None else load
    capacity = PRIORITY_MIX_CAPACITY_PER_REPLICA * replicas
    rate = load * capacity
    sessions = []
    for n, at in enumerate(_poisson(rng, rate, duration)):
        g = rng.randrange(len(prefixes))
        objective = CRITICAL if rng.random() < 0.5 else SHEDDABLE
        sessions.append(Session(at, prefixes[g], (Turn(_question(rng, n, question_tokens), 64),), group=g,
                                objective=objective))
    return Workload("priority-mix", f"24 system prompts of ~3,000 tokens (uniform), ~{question_tokens:,}-token "
                    f"questions, 64 output tokens, Poisson {rate:g} req/s = {load:g}x the cache-aware routers' "
                    f"measured capacity ({capacity:g} req/s: 90% of requests within TTFT <= 0.5 s and ITL <= 50 ms); "
                    "half critical "
                    "(priority 1), half sheddable (priority -1); metrics are the critical requests'",
                    tuple(sessions), max(1, round(load * PRIORITY_MIX_INFLIGHT_AT_CAPACITY * replicas)),
                    objectives=((CRITICAL, 1), (SHEDDABLE, -1)))


def bursty(duration: float, seed: int, replicas: int) -> Workload:
    rng = random.Random(seed + 5)
    prefixes = _prompts(random.Random(seed * 7919 + 5), 24, 3000, "System prompt")
    on, off, peak = 5.0, 5.0, 4.0 * replicas
    times: list[float] = []
    start = 0.0
    while start < duration:
        times += [start + t for t in _poisson(rng, peak, min(on, duration - start))]
        start += on + off
    sessions = _single(rng, times, prefixes, None, 40, 64)
    return Workload("bursty", f"shared-prefix traffic in bursts: {on:g} s at {peak:g} req/s, {off:g} s idle",
                    tuple(sessions), 8 * replicas)


def heterogeneous(duration: float, seed: int, replicas: int) -> Workload:
    base = shared_prefix(duration, seed + 6, replicas)
    slow = min(2, max(1, replicas - 1))
    return Workload("heterogeneous", f"shared-prefix traffic on a pool whose last {slow} replicas take twice "
                    f"as long per step ({base.description})", base.sessions, base.concurrency,
                    PoolSpec(replicas=replicas, slow_replicas=slow))


def long_context(duration: float, seed: int, replicas: int) -> Workload:
    rng = random.Random(seed + 7)
    rate = 1.0 * replicas
    sessions = []
    for n, at in enumerate(_poisson(rng, rate, duration)):
        long = rng.random() < 0.2
        text = f"Document {n}. " + _text(rng, 16000 if long else 200) + "\nSummary:"
        sessions.append(Session(at, "", (Turn(text, 64),), group=1 if long else 0))
    return Workload("long-context", f"20% ~16,000-token unique prompts, 80% ~200-token ones, 64 output tokens, "
                    f"Poisson {rate:g} req/s", tuple(sessions), 4 * replicas)


GENERATORS: dict[str, Callable[[float, int, int], Workload]] = {
    "shared-prefix": shared_prefix,
    "shared-prefix-zipf": shared_prefix_zipf,
    "multi-turn": multi_turn,
    "lora-mix": lora_mix,
    "priority-mix": priority_mix,
    "bursty": bursty,
    "heterogeneous": heterogeneous,
    "long-context": long_context,
}


def make(name: str, duration: float, seed: int = 1, replicas: int = 4, *, closed: bool = False,
         load: float | None = None) -> Workload:
    """Workload ``name`` for ``duration`` model seconds. For a closed loop, sessions for a much
    higher rate than the open loop's (the users take them in order until the time is up).
    ``load``: ``priority-mix`` only, at that many times its calibrated capacity (default 1.5)."""
    if name not in GENERATORS:
        raise KeyError(f"unknown workload {name!r} (known: {', '.join(GENERATORS)})")
    if load is not None and name != "priority-mix":
        raise ValueError(f"load applies to the priority-mix workload only, not {name!r}")
    sessions_for = duration * (6.0 if closed else 1.0)
    workload = (priority_mix(sessions_for, seed, replicas, load=load) if load is not None
                else GENERATORS[name](sessions_for, seed, replicas))
    if workload.pool.replicas != replicas:
        from dataclasses import replace

        workload = replace(workload, pool=replace(workload.pool, replicas=replicas))
    return workload
