"""The shared-prefix workload: long system prompts shared by groups of users, short questions.

Deterministic under a seed: the same seed gives the same prompts and the same Poisson
arrival schedule, so every profile of a benchmark run sees identical traffic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_WORDS = (  # noqa: SIM905
    "gateway inference pool endpoint picker model server cache prefix token latency request "
    "stream queue priority objective adapter replica cluster route header metric schedule "
    "kubernetes envoy service deployment policy review answer question system context window "
    "customer order invoice support ticket account product catalog shipment refund warranty"
).split()


@dataclass(frozen=True)
class WorkloadSpec:
    groups: int = 8  # distinct long system prompts
    system_prompt_tokens: int = 1500  # ~4 characters per token (the simulator's tokenizer)
    question_tokens: int = 40
    max_tokens: int = 64
    rate: float = 4.0  # requests per second (Poisson)
    seed: int = 1


@dataclass(frozen=True)
class PlannedRequest:
    at: float  # seconds after the start
    group: int
    prompt: str
    max_tokens: int


_WORD_BITS = len(_WORDS).bit_length()
_WORD_LENGTHS = tuple(len(word) + 1 for word in _WORDS)  # with the space that joins it


def _text(rng: random.Random, tokens: int) -> str:
    """Words drawn as ``rng.choice(_WORDS)`` draws them (the same rejection sampling over
    ``getrandbits``, so that a seed gives the texts every stored benchmark run was measured on),
    inlined: the peer workloads draw millions of words, and ``choice``'s two calls per word were
    most of their cost."""
    words: list[str] = []
    length = 0
    target = tokens * 4
    count, bits, draw = len(_WORDS), _WORD_BITS, rng.getrandbits
    while length < target:
        index = draw(bits)
        while index >= count:
            index = draw(bits)
        words.append(_WORDS[index])
        length += _WORD_LENGTHS[index]
    return " ".join(words)


text_of_tokens = _text  # public name: the peer benchmark's workloads build their prompts with it


def system_prompts(spec: WorkloadSpec) -> list[str]:
    rng = random.Random(spec.seed * 7919)
    return [f"System prompt {g}. You are assistant {g}. " + _text(rng, spec.system_prompt_tokens)
            for g in range(spec.groups)]


def plan(spec: WorkloadSpec, duration: float) -> list[PlannedRequest]:
    """Poisson arrivals over ``duration`` seconds, each picking a group uniformly."""
    rng = random.Random(spec.seed)
    prompts = system_prompts(spec)
    planned: list[PlannedRequest] = []
    at = rng.expovariate(spec.rate)
    number = 0
    while at < duration:
        group = rng.randrange(spec.groups)
        question = f"\nQuestion {number}: " + _text(rng, spec.question_tokens) + "?\nAnswer:"
        planned.append(PlannedRequest(at, group, prompts[group] + question, spec.max_tokens))
        number += 1
        at += rng.expovariate(spec.rate)
    return planned
