"""The model server protocol: which Prometheus series carry queue depth, KV cache use and LoRA state.

Mappings per model-server type, as upstream's Model Server Protocol and Helm chart define
them (gie.md §3.3): vLLM (default), SGLang and TensorRT-LLM behind Triton. A metric spec is
``name`` or ``name{label=value,...}`` (upstream's ``--*-metric`` flag syntax); ``""``
disables a signal. A protocol may list fallbacks for a signal (first series found wins):
vLLM renamed ``gpu_cache_usage_perc`` to ``kv_cache_usage_perc``, and upstream v1.0 only
knows the old name, so we read the old name first and the new one when it is absent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property


class MetricSpecError(ValueError):
    pass


@dataclass(frozen=True)
class MetricSpec:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __str__(self) -> str:
        if not self.labels:
            return self.name
        return self.name + "{" + ",".join(f"{k}={v}" for k, v in self.labels.items()) + "}"


_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def parse_metric_spec(text: str) -> MetricSpec | None:
    """``name`` or ``name{l1=v1,l2=v2}``; ``""`` -> None (signal disabled). Errors as upstream."""
    text = text.strip()
    if not text:
        return None
    labels: dict[str, str] = {}
    if "{" in text or "}" in text:
        open_at = text.find("{")
        close_at = text.rfind("}")
        if open_at < 0 or close_at < 0 or close_at < open_at or text.count("{") != 1 or text.count("}") != 1:
            raise MetricSpecError(f"metric spec {text!r}: unbalanced braces")
        if close_at != len(text) - 1:
            raise MetricSpecError(f"metric spec {text!r}: unexpected characters after '}}'")
        name = text[:open_at].strip()
        body = text[open_at + 1 : close_at].strip()
        if body:
            for pair in body.split(","):
                key, sep, value = pair.partition("=")
                key, value = key.strip(), value.strip().strip('"')
                if not sep or not key or not value:
                    raise MetricSpecError(f"metric spec {text!r}: invalid label pair {pair.strip()!r}")
                labels[key] = value
    else:
        name = text
    if not name or not _NAME.match(name):
        raise MetricSpecError(f"metric spec {text!r}: invalid metric name {name!r}")
    return MetricSpec(name, labels)


def _specs(*texts: str) -> tuple[MetricSpec, ...]:
    return tuple(s for s in (parse_metric_spec(t) for t in texts) if s is not None)


@dataclass(frozen=True)
class ModelServerProtocol:
    """Which series to read; each signal is a tuple of specs tried in order (empty = disabled)."""

    name: str
    waiting_queue: tuple[MetricSpec, ...]
    kv_cache_usage: tuple[MetricSpec, ...]
    running: tuple[MetricSpec, ...] = ()
    lora_info: tuple[MetricSpec, ...] = ()
    # cumulative TTFT and inter-token latency histograms' _sum and _count: the TTFT _count (requests
    # whose prefill completed) for the pick-time accounting (vLLM's and SGLang's protocols read it);
    # the others for the latency holdback, only once ``with_latency`` added them (each is one line
    # per scrape, ~100 bytes)
    ttft_sum: tuple[MetricSpec, ...] = ()
    ttft_count: tuple[MetricSpec, ...] = ()
    itl_sum: tuple[MetricSpec, ...] = ()
    itl_count: tuple[MetricSpec, ...] = ()

    def metric_names(self) -> tuple[str, ...]:
        """The series names read, each once (computed once: every scrape asks)."""
        return self._metric_names

    @cached_property
    def _metric_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(
            s.name for s in (*self.waiting_queue, *self.kv_cache_usage, *self.running, *self.lora_info,
                             *self.ttft_sum, *self.ttft_count, *self.itl_sum, *self.itl_count)
        ))

    def with_latency(self) -> ModelServerProtocol:
        """This protocol also reading the latency histograms' ``_sum``/``_count`` (vLLM's names;
        other servers have none here, so the latency holdback has no signal there)."""
        spec = LATENCY_SERIES.get(self.name)
        if spec is None:
            return self
        ttft, itl = spec
        return replace(self, ttft_sum=_specs(*(n + "_sum" for n in ttft)), ttft_count=_specs(*(n + "_count" for n in ttft)),
                       itl_sum=_specs(*(n + "_sum" for n in itl)), itl_count=_specs(*(n + "_count" for n in itl)))

    def with_overrides(self, *, waiting_queue: str | None = None, kv_cache_usage: str | None = None,
                       lora_info: str | None = None) -> ModelServerProtocol:
        """Apply upstream-style flag overrides (``--total-queued-requests-metric`` etc.)."""
        return ModelServerProtocol(
            name=self.name,
            waiting_queue=self.waiting_queue if waiting_queue is None else _specs(waiting_queue),
            kv_cache_usage=self.kv_cache_usage if kv_cache_usage is None else _specs(kv_cache_usage),
            running=self.running,
            lora_info=self.lora_info if lora_info is None else _specs(lora_info),
            ttft_sum=self.ttft_sum, ttft_count=self.ttft_count, itl_sum=self.itl_sum, itl_count=self.itl_count,
        )


VLLM = ModelServerProtocol(
    name="vllm",
    waiting_queue=_specs("vllm:num_requests_waiting"),
    kv_cache_usage=_specs("vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"),
    running=_specs("vllm:num_requests_running"),
    lora_info=_specs("vllm:lora_requests_info"),
    ttft_count=_specs("vllm:time_to_first_token_seconds_count"),
)
SGLANG = ModelServerProtocol(
    name="sglang",
    waiting_queue=_specs("sglang:num_queue_reqs"),
    kv_cache_usage=_specs("sglang:token_usage"),
    running=_specs("sglang:num_running_reqs"),
    ttft_count=_specs("sglang:time_to_first_token_seconds_count"),
)
TRITON_TRTLLM = ModelServerProtocol(
    name="triton-tensorrt-llm",
    waiting_queue=_specs("nv_trt_llm_request_metrics{request_type=waiting}"),
    kv_cache_usage=_specs("nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=fraction}"),
    running=_specs("nv_trt_llm_request_metrics{request_type=active}"),
)

# histogram names per protocol (first found wins): vLLM renamed time_per_output_token_seconds
LATENCY_SERIES: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "vllm": (("vllm:time_to_first_token_seconds",),
             ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")),
}

PROTOCOLS: Mapping[str, ModelServerProtocol] = {
    "vllm": VLLM,
    "sglang": SGLANG,
    "triton-tensorrt-llm": TRITON_TRTLLM,
    "trtllm": TRITON_TRTLLM,
}


def protocol_by_name(name: str) -> ModelServerProtocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise MetricSpecError(
            f"model server type {name!r}: must be one of vllm, sglang, triton-tensorrt-llm"
        ) from None
