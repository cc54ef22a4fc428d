"""Micro-benchmark: the EPP's /metrics parser against prometheus_client's, on a simulator page.

The scraper reads every endpoint's page every 50 ms, so parsing is on the EPP's hot path. The
EPP's parser (``metrics_scraper.parse_metrics``) finds only the series the Model Server Protocol
needs; ``prometheus_client.parser.text_string_to_metric_families`` parses the whole page. Both
runs here produce the same signals (tests/epp/test_metrics_parser_differential.py checks that on
vLLM, SGLang and TensorRT-LLM pages). Run::

    python -m infergate.epp.bench_metrics_parser [--rounds 5] [--iterations 300]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from infergate.epp.metrics_scraper import EndpointMetrics, parse_metrics
from infergate.epp.model_server_protocol import VLLM
from infergate.sim.metrics import EngineSnapshot, EngineStats, render_vllm


def simulator_page(seed: int = 1) -> str:
    """A busy simulator replica's vLLM page (every histogram filled)."""
    rng = random.Random(seed)
    stats = EngineStats(max_model_len=8192, prompt_tokens=1_843_020, generation_tokens=412_877,
                        prefix_cache_queries=1_843_020, prefix_cache_hits=1_290_112, preemptions=7,
                        requests_finished={"stop": 1811, "length": 214, "abort": 3})
    for _ in range(2000):
        stats.ttft.observe(rng.uniform(0.01, 0.5))
        stats.itl.observe(rng.uniform(0.01, 0.1))
        stats.e2e.observe(rng.uniform(0.5, 20))
        stats.queue_time.observe(rng.uniform(0, 2))
        stats.prefill_time.observe(rng.uniform(0.01, 0.4))
        stats.decode_time.observe(rng.uniform(0.5, 18))
        stats.request_prompt_tokens.observe(rng.randint(16, 4000))
        stats.request_generation_tokens.observe(rng.randint(1, 1000))
    snapshot = EngineSnapshot(model="meta-llama/Llama-3.1-8B-Instruct", running=12, waiting=3, kv_usage=0.42,
                              used_blocks=11_400, num_blocks=27_136, block_size=16, max_loras=4,
                              running_loras=("sql-lora",), waiting_loras=(), max_num_seqs=256,
                              max_num_batched_tokens=8192)
    return render_vllm(snapshot, stats)


def with_prometheus_client(text: str) -> EndpointMetrics:
    """The same three signals through prometheus_client's full parse (what the EPP would do with it)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc",
                               "vllm:num_requests_running") and sample.name not in values:
                values[sample.name] = sample.value
    return EndpointMetrics(waiting_queue=int(values["vllm:num_requests_waiting"]),
                           kv_cache_usage=values["vllm:gpu_cache_usage_perc"],
                           running=int(values["vllm:num_requests_running"]))


@dataclass(frozen=True)
class Result:
    page_lines: int
    ours_us: float  # per parse, best round
    prometheus_client_us: float
    ratio: float  # prometheus_client time / ours


def _best(parse: Callable[[str], EndpointMetrics], text: str, rounds: int, iterations: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(iterations):
            parse(text)
        best = min(best, (time.perf_counter() - started) / iterations)
    return best


def run(rounds: int = 5, iterations: int = 300) -> Result:
    text = simulator_page()
    ours = parse_metrics(text, VLLM, now=0.0)
    theirs = with_prometheus_client(text)
    assert (ours.waiting_queue, ours.kv_cache_usage, ours.running) == (
        theirs.waiting_queue, theirs.kv_cache_usage, theirs.running), "the parsers disagree"
    mine = _best(lambda t: parse_metrics(t, VLLM, now=0.0), text, rounds, iterations)
    reference = _best(with_prometheus_client, text, rounds, max(1, iterations // 10))
    return Result(text.count("\n"), mine * 1e6, reference * 1e6, reference / mine)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run(args.rounds, args.iterations)
    if args.json:
        print(json.dumps(result.__dict__))
    else:
        print(f"simulator page: {result.page_lines} lines")
        print(f"infergate parse_metrics:          {result.ours_us:9.1f} us")
        print(f"prometheus_client text parser:     {result.prometheus_client_us:9.1f} us")
        print(f"ratio: {result.ratio:.1f}x faster")


if __name__ == "__main__":
    main()
