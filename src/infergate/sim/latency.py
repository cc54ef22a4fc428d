"""The step-time model: how long one engine step of continuous batching takes.

One step runs every scheduled sequence once: a decoding sequence computes one token, a
prefilling sequence computes a chunk of its prompt (chunked prefill under the token budget).
The cost is linear in what the GPU does in the step (all terms documented in docs/sim.md):

    t = base + per_seq * S + per_prefill_token * P + per_context_token * C + attention * A + lora_load * L

S sequences in the step, P prefill tokens, C KV tokens read by decoding sequences (their
context lengths), A = sum over prefill chunks of chunk * (prior_context + chunk / 2) (the
causal-attention token pairs of the chunk), L adapters loaded for the step. The caller keeps
S, P, C, A as running sums, so the cost is O(1) per scheduled sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

from infergate.sim.config import LatencyProfile


@dataclass
class StepShape:
    sequences: int = 0
    prefill_tokens: int = 0
    decode_context_tokens: int = 0
    attention_pairs: float = 0.0
    lora_loads: int = 0

    def add_decode(self, context: int) -> None:
        self.sequences += 1
        self.decode_context_tokens += context

    def add_prefill(self, chunk: int, prior_context: int) -> None:
        self.sequences += 1
        self.prefill_tokens += chunk
        self.attention_pairs += chunk * (prior_context + chunk / 2)


def step_time(profile: LatencyProfile, shape: StepShape) -> float:
    """Model seconds the step takes (before jitter)."""
    return (
        profile.step_base_s
        + profile.per_seq_s * shape.sequences
        + profile.per_prefill_token_s * shape.prefill_tokens
        + profile.per_context_token_s * shape.decode_context_tokens
        + profile.attention_s * shape.attention_pairs
        + profile.lora_load_s * shape.lora_loads
    )
