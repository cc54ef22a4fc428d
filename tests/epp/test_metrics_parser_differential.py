"""The EPP's own /metrics parser against prometheus_client's, on a vLLM, an SGLang and a
Triton TensorRT-LLM page (tests/epp/testdata, with the series those servers export).

The EPP keeps its own parser because it is much faster (``python -m
infergate.epp.bench_metrics_parser``); these tests keep it exact: every sample of every page
reads the same, and the signals each Model Server Protocol maps are the ones prometheus_client
would give.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infergate.epp.bench_metrics_parser import run, simulator_page
from infergate.epp.metrics_scraper import parse_metrics, read_series
from infergate.epp.model_server_protocol import MetricSpec, ModelServerProtocol, protocol_by_name

TESTDATA = Path(__file__).parent / "testdata"
PAGES = {"vllm": "vllm.metrics.txt", "sglang": "sglang.metrics.txt", "triton-tensorrt-llm": "trtllm.metrics.txt"}

Sample = tuple[dict[str, str], float, float]


def _reference(text: str) -> dict[str, list[Sample]]:
    """Sample name -> [(labels, value, timestamp in ms or 0)], in page order, by prometheus_client."""
    out: dict[str, list[Sample]] = {}
    lines = text.splitlines()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name
            if family.type == "counter" and not any(line.startswith((name + "{", name + " ")) for line in lines):
                name = name.removesuffix("_total")  # prometheus_client names Triton's counters <name>_total
            stamp = 0.0 if s.timestamp is None else float(s.timestamp) * 1000
            out.setdefault(name, []).append((dict(s.labels), float(s.value), stamp))
    return out


def _same(a: list[Sample], b: list[Sample]) -> bool:
    return len(a) == len(b) and all(
        la == lb and (va == vb or (math.isnan(va) and math.isnan(vb))) and ta == pytest.approx(tb)
        for (la, va, ta), (lb, vb, tb) in zip(a, b, strict=True))


def _signal(reference: dict[str, list[Sample]], specs: tuple[MetricSpec, ...]) -> float | None:
    """Upstream's rule, on prometheus_client's samples: the first spec present wins; among the series
    carrying all its labels, the newest (the first when none has a timestamp)."""
    for spec in specs:
        matching = [s for s in reference.get(spec.name, []) if all(s[0].get(k) == v for k, v in spec.labels.items())]
        if matching:
            return max(matching, key=lambda s: s[2])[1]  # max keeps the first of equal timestamps
    return None


def _pages() -> list[tuple[str, str]]:
    return [(name, (TESTDATA / file).read_text()) for name, file in PAGES.items()] + [("vllm", simulator_page())]


@pytest.mark.parametrize(("protocol_name", "text"), _pages(), ids=[*PAGES, "simulator"])
def test_every_sample_reads_as_prometheus_client_reads_it(protocol_name: str, text: str) -> None:
    reference = _reference(text)
    assert len(reference) > 10
    ours = read_series(text, tuple(reference))
    assert set(ours) == set(reference)
    for name, samples in reference.items():
        assert _same(ours[name], samples), name


@pytest.mark.parametrize(("protocol_name", "text"), _pages(), ids=[*PAGES, "simulator"])
def test_protocol_signals_match_prometheus_client(protocol_name: str, text: str) -> None:
    protocol: ModelServerProtocol = protocol_by_name(protocol_name)
    reference = _reference(text)
    parsed = parse_metrics(text, protocol, now=1.0)
    assert parsed.missing == ()
    assert parsed.waiting_queue == int(_signal(reference, protocol.waiting_queue) or -1)
    assert parsed.kv_cache_usage == _signal(reference, protocol.kv_cache_usage)
    assert parsed.running == int(_signal(reference, protocol.running) or -1)


def test_the_pages_carry_the_documented_series() -> None:
    pages = {name: _reference((TESTDATA / file).read_text()) for name, file in PAGES.items()}
    vllm = parse_metrics((TESTDATA / PAGES["vllm"]).read_text(), protocol_by_name("vllm"))
    assert (vllm.waiting_queue, vllm.running, vllm.kv_cache_usage) == (3, 12, pytest.approx(0.41728395))
    # the newest lora_requests_info series with an adapter list (its value is its update time)
    assert vllm.active_models == {"sql-lora", "food-review-1"} and vllm.waiting_models == {"movie-critique"}
    assert vllm.max_active_models == 4
    assert "vllm:cache_config_info" in pages["vllm"] and "vllm:kv_cache_usage_perc" in pages["vllm"]
    sglang = parse_metrics((TESTDATA / PAGES["sglang"]).read_text(), protocol_by_name("sglang"))
    assert (sglang.waiting_queue, sglang.running, sglang.kv_cache_usage) == (9, 24, 0.63)
    trt = parse_metrics((TESTDATA / PAGES["triton-tensorrt-llm"]).read_text(), protocol_by_name("triton-tensorrt-llm"))
    assert (trt.waiting_queue, trt.running, trt.kv_cache_usage) == (4, 17, 0.344482421875)


def test_escapes_timestamps_and_special_values() -> None:
    text = ('# TYPE m gauge\nm{a="x\\"y",b="back\\\\slash",c="new\\nline"} 1.5 1700000000123\n'
            'm{a="plain"} +Inf\nm{a="neg"} -2e-3\nm_total 3\n')
    reference = _reference(text)
    ours = read_series(text, tuple(reference))
    assert set(ours) == set(reference) == {"m", "m_total"}
    for name, samples in reference.items():
        assert _same(ours[name], samples), name


def test_benchmark_runs_and_the_own_parser_is_faster() -> None:
    result = run(rounds=1, iterations=20)
    assert result.page_lines > 200 and result.ratio > 2  # measured ~30x; loose for a loaded machine
