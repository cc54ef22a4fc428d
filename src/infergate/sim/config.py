"""Simulator configuration: latency profiles (named, calibrated presets) and ``SimConfig``.

All durations in a profile are *model* seconds, i.e. what a real GPU would take. The
simulator divides every duration by ``SimConfig.time_scale`` before sleeping, so a factor of
20 makes the whole model (steps, LoRA loads, start-up delay, injected latency) 20x faster
while metrics keep reporting model time. See docs/sim.md for the formula and the sources.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

MetricsFlavor = Literal["vllm", "sglang"]
KvEventsEncoding = Literal["map", "array"]


def _is_tcp_endpoint(value: str) -> bool:
    if not value.startswith("tcp://"):
        return False
    host, sep, port = value[6:].rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


@dataclass(frozen=True)
class LatencyProfile:
    """Parameters of the step-time formula (see ``infergate.sim.latency``) and engine limits.

    step_time = step_base_s
              + per_seq_s * (sequences in the step)
              + per_prefill_token_s * (prefill tokens in the step)
              + per_context_token_s * (tokens of KV context read by decoding sequences)
              + attention_s * sum(chunk * (prior_context + chunk / 2))   (prefill attention)
              + lora_load_s * (adapters loaded for this step)
    """

    name: str
    description: str
    step_base_s: float
    per_seq_s: float
    per_prefill_token_s: float
    per_context_token_s: float
    attention_s: float
    lora_load_s: float
    request_overhead_s: float  # API server work per request (tokenize, detokenize), before queueing
    num_gpu_blocks: int
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    jitter: float  # relative standard deviation of each step time (0 = deterministic)


# Sources for these numbers are in docs/sim.md ("Calibration"); the short version:
# - decode: TPOT(b) ~= 6.7 ms + 0.074 ms * b for Llama-3.1-8B on 1xH100 (fit through LambdaLabs
#   vllm-benchmark 7.4 ms @ batch 10 and vLLM benchmark_v0 25.6 ms @ batch 256), split here into
#   a per-sequence term and a KV-read term (128 KiB/token FP16 at ~50% of 3.35 TB/s).
# - prefill: 2 * 8.03e9 FLOP/token at ~45-50% MFU of 989 TFLOPS -> ~0.04 ms/token on H100;
#   attention 4 * 32 layers * 4096 FLOP per token pair at the same efficiency.
# - KV capacity: (80 GiB * 0.9 - 14.96 GiB weights - 5.65 GiB activations/other) / 128 KiB
#   -> ~421K tokens -> 26,300 blocks of 16 (BLIS kv_capacity.go method).
PROFILES: dict[str, LatencyProfile] = {
    p.name: p
    for p in (
        LatencyProfile(
            name="llama-3.1-8b-h100",
            description="Llama-3.1-8B-Instruct BF16 on one H100 80GB SXM, vLLM v1 defaults",
            step_base_s=0.0065,
            per_seq_s=0.000047,
            per_prefill_token_s=0.000040,
            per_context_token_s=0.000000080,
            attention_s=0.0000000012,
            lora_load_s=0.025,
            request_overhead_s=0.002,
            num_gpu_blocks=26_300,
            max_num_seqs=256,
            max_num_batched_tokens=8192,
            max_model_len=131_072,
            jitter=0.05,
        ),
        LatencyProfile(
            name="llama-3.1-8b-a100",
            description="Llama-3.1-8B-Instruct BF16 on one A100 80GB, vLLM v1 defaults",
            step_base_s=0.0140,
            per_seq_s=0.000100,
            per_prefill_token_s=0.000135,
            per_context_token_s=0.000000130,
            attention_s=0.0000000045,
            lora_load_s=0.040,
            request_overhead_s=0.003,
            num_gpu_blocks=26_300,
            max_num_seqs=256,
            max_num_batched_tokens=8192,
            max_model_len=131_072,
            jitter=0.05,
        ),
        LatencyProfile(
            name="llama-3.1-8b-a100-40gb",
            description="Llama-3.1-8B-Instruct BF16 on one A100 40GB (smaller KV cache), vLLM v1 defaults",
            step_base_s=0.0140,
            per_seq_s=0.000100,
            per_prefill_token_s=0.000135,
            per_context_token_s=0.000000130,
            attention_s=0.0000000045,
            lora_load_s=0.040,
            request_overhead_s=0.003,
            num_gpu_blocks=7_900,
            max_num_seqs=256,
            max_num_batched_tokens=8192,
            max_model_len=126_400,
            jitter=0.05,
        ),
    )
}

DEFAULT_PROFILE = "llama-3.1-8b-h100"


@dataclass(frozen=True)
class SimConfig:
    """Configuration shared by every replica of a simulated pool.

    ``None`` for an engine limit means "take it from the profile". Durations given here
    (``startup_delay_s``) are model seconds, scaled by ``time_scale`` like everything else.
    """

    model: str = "meta-llama/Llama-3.1-8B-Instruct"
    lora_adapters: tuple[str, ...] = ()
    max_loras: int = 1
    profile: str = DEFAULT_PROFILE
    time_scale: float = 1.0
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    num_gpu_blocks: int | None = None
    block_size: int = 16
    max_model_len: int | None = None
    enable_prefix_caching: bool = True
    jitter: float | None = None
    # Output length when the request does not force one (no ignore_eos): a deterministic
    # pseudo-random length in [1, 2 * mean] per prompt, capped by max_tokens. 0 = always max_tokens.
    mean_output_tokens: int = 128
    max_waiting_requests: int | None = None  # None = unbounded FIFO, like vLLM
    stream_interval: int = 1  # tokens per SSE flush (vLLM --stream-interval)
    seed: int = 0
    metrics_flavor: MetricsFlavor = "vllm"
    pod_name: str | None = None  # x-inference-pod; default "sim-<index>"
    namespace: str | None = None  # x-inference-namespace, when set
    startup_delay_s: float = 0.0  # readiness false for this long after start
    # vLLM's OpenAIServing._check_model answers 404 NotFoundError; 400 BadRequestError is offered
    # for clients written against the OpenAI convention of a bad request.
    unknown_model_status: int = 404
    allow_runtime_lora_updating: bool = False  # vLLM's VLLM_ALLOW_RUNTIME_LORA_UPDATING: /v1/(un)load_lora_adapter
    profile_overrides: dict[str, float] = field(default_factory=dict, hash=False)
    # vLLM-style KV events (infergate.sim.kv_events): ZMQ PUB endpoint (None = off), replay
    # ROUTER endpoint, and the msgpack form ("map": vLLM >= 2026-06, "array": earlier)
    kv_events_endpoint: str | None = None
    kv_events_replay_endpoint: str | None = None
    kv_events_encoding: KvEventsEncoding = "map"

    def __post_init__(self) -> None:
        errors: list[str] = []
        if self.profile not in PROFILES:
            errors.append(f"profile: unknown profile {self.profile!r} (known: {', '.join(sorted(PROFILES))})")
        if not self.time_scale > 0:
            errors.append("time_scale: must be > 0")
        if self.max_loras < 1:
            errors.append("max_loras: must be >= 1")
        if self.block_size not in (8, 16, 32, 64, 128):
            errors.append("block_size: must be one of 8, 16, 32, 64, 128")
        for name in ("max_num_seqs", "max_num_batched_tokens", "num_gpu_blocks", "max_model_len"):
            value = getattr(self, name)
            if value is not None and value < 1:
                errors.append(f"{name}: must be >= 1")
        if self.jitter is not None and not 0 <= self.jitter < 0.5:
            errors.append("jitter: must be in [0, 0.5)")
        if self.unknown_model_status not in (400, 404):
            errors.append("unknown_model_status: must be 400 or 404")
        if self.stream_interval < 1:
            errors.append("stream_interval: must be >= 1")
        if self.metrics_flavor not in ("vllm", "sglang"):
            errors.append("metrics_flavor: must be 'vllm' or 'sglang'")
        if self.startup_delay_s < 0:
            errors.append("startup_delay_s: must be >= 0")
        known = {f.name for f in dataclasses.fields(LatencyProfile)} - {"name", "description"}
        for key in self.profile_overrides:
            if key not in known:
                errors.append(f"profile_overrides.{key}: unknown profile parameter (known: {', '.join(sorted(known))})")
        for name in ("kv_events_endpoint", "kv_events_replay_endpoint"):
            value = getattr(self, name)
            if value is not None and not _is_tcp_endpoint(value):
                errors.append(f"{name}: must look like tcp://HOST:PORT (HOST may be *), got {value!r}")
        if self.kv_events_replay_endpoint and not self.kv_events_endpoint:
            errors.append("kv_events_replay_endpoint: needs kv_events_endpoint")
        if self.kv_events_encoding not in ("map", "array"):
            errors.append("kv_events_encoding: must be 'map' or 'array'")
        for adapter in self.lora_adapters:
            if not adapter or "," in adapter:
                errors.append(f"lora_adapters: invalid adapter name {adapter!r}")
        if errors:
            raise ValueError("invalid simulator configuration: " + "; ".join(errors))

    def latency_profile(self) -> LatencyProfile:
        """The named profile with ``profile_overrides`` and the explicit limits applied."""
        base = PROFILES[self.profile]
        changes: dict[str, object] = dict(self.profile_overrides)
        for name in ("max_num_seqs", "max_num_batched_tokens", "num_gpu_blocks", "max_model_len", "jitter"):
            value = getattr(self, name)
            if value is not None:
                changes[name] = value
        for key in ("num_gpu_blocks", "max_num_seqs", "max_num_batched_tokens", "max_model_len"):
            if key in changes:
                changes[key] = int(changes[key])  # type: ignore[call-overload]
        profile = dataclasses.replace(base, **changes)  # type: ignore[arg-type]
        # vLLM refuses to start when one max-length request cannot fit in the KV cache; the
        # simulator instead caps max_model_len at the cache capacity.
        capacity = profile.num_gpu_blocks * self.block_size
        if profile.max_model_len > capacity:
            profile = dataclasses.replace(profile, max_model_len=capacity)
        return profile
