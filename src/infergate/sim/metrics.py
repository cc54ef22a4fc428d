"""Engine statistics and their Prometheus text rendering under vLLM's or SGLang's names.

The text is written by hand (no registry) because a replica renders it on every scrape
(the EPP scrapes every 50 ms) and the engine updates the values on every step.
Names and labels follow vLLM v1 (``vllm/v1/metrics/loggers.py``) and SGLang
(``python/sglang/srt/metrics/collector.py``, docs ``references/production_metrics.md``).
Latencies are reported in model seconds (wall time multiplied by the time scale).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

# vLLM v1 bucket boundaries
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
               20.0, 40.0, 80.0)
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                           60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)


def one_two_five_buckets(maximum: int) -> tuple[float, ...]:
    """vLLM's ``build_1_2_5_buckets``: 1, 2, 5, 10, 20, 50, ... up to ``maximum``."""
    out: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > maximum:
                return tuple(out)
            out.append(float(value))
        exponent += 1


class Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


@dataclass
class EngineStats:
    """Counters and histograms a replica's engine updates (reset when the replica restarts)."""

    max_model_len: int
    prompt_tokens: int = 0  # vLLM: counted when a request's prefill completes (its first token)
    generation_tokens: int = 0  # vLLM: counted as each token is produced
    # SGLang counts these when a request finishes (TokenizerMetricsCollector.observe_one_finished_request
    # in python/sglang/srt/metrics/collector.py)
    finished_prompt_tokens: int = 0
    finished_generation_tokens: int = 0
    finished_cached_tokens: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    preemptions: int = 0
    requests_finished: dict[str, int] = field(default_factory=lambda: {"stop": 0, "length": 0, "abort": 0})
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    itl: Histogram = field(default_factory=lambda: Histogram(ITL_BUCKETS))
    e2e: Histogram = field(default_factory=lambda: Histogram(REQUEST_LATENCY_BUCKETS))
    queue_time: Histogram = field(default_factory=lambda: Histogram(REQUEST_LATENCY_BUCKETS))
    prefill_time: Histogram = field(default_factory=lambda: Histogram(REQUEST_LATENCY_BUCKETS))
    decode_time: Histogram = field(default_factory=lambda: Histogram(REQUEST_LATENCY_BUCKETS))
    request_prompt_tokens: Histogram = field(init=False)
    request_generation_tokens: Histogram = field(init=False)

    def __post_init__(self) -> None:
        self.request_prompt_tokens = Histogram(one_two_five_buckets(self.max_model_len))
        self.request_generation_tokens = Histogram(one_two_five_buckets(self.max_model_len))


@dataclass(frozen=True)
class EngineSnapshot:
    """The gauges at scrape time."""

    model: str
    running: int
    waiting: int
    kv_usage: float
    used_blocks: int
    num_blocks: int
    block_size: int
    max_loras: int
    running_loras: tuple[str, ...]
    waiting_loras: tuple[str, ...]
    max_num_seqs: int
    max_num_batched_tokens: int
    prefix_caching: bool = True


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in pairs) + "}"


class _Writer:
    """Writes metric families; with ``names`` (the ``name[]`` query parameters of the scrape),
    only the families with a sample of one of those names, and only those samples, as
    ``prometheus_client``'s exposition (which vLLM and SGLang serve ``/metrics`` with) does."""

    def __init__(self, names: Collection[str] | None = None) -> None:
        self.lines: list[str] = []
        self.names = names

    def _wanted(self, *sample_names: str) -> bool:
        return self.names is None or any(n in self.names for n in sample_names)

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def gauge(self, name: str, help_text: str, labels: str, value: float) -> None:
        if not self._wanted(name):
            return
        self.family(name, "gauge", help_text)
        self.lines.append(f"{name}{labels} {float(value)!r}")

    def counter(self, name: str, help_text: str, samples: Sequence[tuple[str, float]]) -> None:
        if not self._wanted(name + "_total"):
            return
        self.family(name, "counter", help_text)
        for labels, value in samples:
            self.lines.append(f"{name}_total{labels} {float(value)!r}")

    def histogram(self, name: str, help_text: str, base: Sequence[tuple[str, str]], h: Histogram) -> None:
        parts = (name + "_bucket", name + "_count", name + "_sum")
        if not self._wanted(*parts):
            return
        if self.names is not None and not all(part in self.names for part in parts):
            self._histogram_samples(name, help_text, base, h, {p for p in parts if p in self.names})
            return
        self.family(name, "histogram", help_text)
        cumulative = 0
        for bound, count in zip(h.bounds, h.counts, strict=False):
            cumulative += count
            self.lines.append(f"{name}_bucket{_labels([*base, ('le', repr(float(bound)))])} {float(cumulative)!r}")
        self.lines.append(f"{name}_bucket{_labels([*base, ('le', '+Inf')])} {float(h.count)!r}")
        self.lines.append(f"{name}_count{_labels(base)} {float(h.count)!r}")
        self.lines.append(f"{name}_sum{_labels(base)} {float(h.sum)!r}")

    def _histogram_samples(self, name: str, help_text: str, base: Sequence[tuple[str, str]], h: Histogram,
                           parts: set[str]) -> None:
        """A histogram restricted to some of its sample names (``name[]=x_count``, say)."""
        whole = _Writer()
        whole.histogram(name, help_text, base, h)
        self.lines.extend(line for line in whole.lines
                          if line.startswith("#") or line.split("{", 1)[0].split(" ", 1)[0] in parts)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n" if self.lines else ""


def render_vllm(snap: EngineSnapshot, stats: EngineStats, names: Collection[str] | None = None) -> str:
    w = _Writer(names)
    base = [("model_name", snap.model)]
    lb = _labels(base)
    w.gauge("vllm:num_requests_running", "Number of requests in model execution batches.", lb, snap.running)
    w.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", lb, snap.waiting)
    w.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", lb, snap.kv_usage)
    w.gauge("vllm:gpu_cache_usage_perc",
            "GPU KV-cache usage. 1 means 100 percent usage. (deprecated name of vllm:kv_cache_usage_perc)",
            lb, snap.kv_usage)
    lora = _labels([("max_lora", str(snap.max_loras)),
                    ("running_lora_adapters", ",".join(snap.running_loras)),
                    ("waiting_lora_adapters", ",".join(snap.waiting_loras))])
    w.gauge("vllm:lora_requests_info", "Running stats on lora requests.", lora, time.time())
    cache = _labels([("block_size", str(snap.block_size)), ("cache_dtype", "auto"),
                     ("enable_prefix_caching", str(snap.prefix_caching)), ("gpu_memory_utilization", "0.9"),
                     ("num_cpu_blocks", "0"), ("num_gpu_blocks", str(snap.num_blocks))])
    w.gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", cache, 1)
    w.counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.",
              [(lb, stats.prefix_cache_queries)])
    w.counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.",
              [(lb, stats.prefix_cache_hits)])
    w.counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", [(lb, stats.preemptions)])
    w.counter("vllm:prompt_tokens", "Number of prefill tokens processed.", [(lb, stats.prompt_tokens)])
    w.counter("vllm:generation_tokens", "Number of generation tokens processed.", [(lb, stats.generation_tokens)])
    w.counter("vllm:request_success", "Count of successfully processed requests.",
              [(_labels([*base, ("finished_reason", r)]), n) for r, n in stats.requests_finished.items()])
    w.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", base, stats.ttft)
    w.histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", base, stats.itl)
    w.histogram("vllm:time_per_output_token_seconds",
                "Histogram of time per output token in seconds. (deprecated name of inter_token_latency)",
                base, stats.itl)
    w.histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", base, stats.e2e)
    w.histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.",
                base, stats.queue_time)
    w.histogram("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.",
                base, stats.prefill_time)
    w.histogram("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.",
                base, stats.decode_time)
    w.histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", base,
                stats.request_prompt_tokens)
    w.histogram("vllm:request_generation_tokens", "Number of generation tokens processed.", base,
                stats.request_generation_tokens)
    return w.text()


def render_sglang(snap: EngineSnapshot, stats: EngineStats, names: Collection[str] | None = None) -> str:
    w = _Writer(names)
    base = [("model_name", snap.model)]
    lb = _labels(base)
    w.gauge("sglang:num_running_reqs", "The number of running requests.", lb, snap.running)
    w.gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.", lb, snap.waiting)
    w.gauge("sglang:num_used_tokens", "The number of used tokens.", lb, snap.used_blocks * snap.block_size)
    w.gauge("sglang:max_total_num_tokens", "Maximum total number of tokens in the KV cache pool.", lb,
            snap.num_blocks * snap.block_size)
    w.gauge("sglang:token_usage", "The token usage.", lb, snap.kv_usage)
    hit_rate = stats.prefix_cache_hits / stats.prefix_cache_queries if stats.prefix_cache_queries else 0.0
    w.gauge("sglang:cache_hit_rate", "The prefix cache hit rate.", lb, hit_rate)
    w.gauge("sglang:max_running_requests", "Maximum running requests.", lb, snap.max_num_seqs)
    w.gauge("sglang:max_prefill_tokens", "Maximum prefill tokens.", lb, snap.max_num_batched_tokens)
    w.counter("sglang:prompt_tokens", "Number of prefill tokens processed.", [(lb, stats.finished_prompt_tokens)])
    w.counter("sglang:generation_tokens", "Number of generation tokens processed.",
              [(lb, stats.finished_generation_tokens)])
    w.counter("sglang:cached_tokens", "Number of cached prompt tokens.", [(lb, stats.finished_cached_tokens)])
    w.counter("sglang:num_requests", "Number of requests processed.", [(lb, sum(stats.requests_finished.values()))])
    w.histogram("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", base,
                stats.ttft)
    w.histogram("sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", base,
                stats.itl)
    w.histogram("sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds", base,
                stats.e2e)
    return w.text()
