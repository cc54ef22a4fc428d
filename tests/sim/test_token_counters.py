"""When the token counters move, stepping the engine by hand (no step loop, no HTTP).

vLLM v1 counts a request's prompt in ``vllm:prompt_tokens_total`` when its prefill completes
(its first output token); SGLang counts prompt and generation tokens when the request finishes.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from infergate.sim.config import SimConfig
from infergate.sim.engine import Engine, SeqStatus, Sequence
from infergate.sim.metrics import render_sglang, render_vllm

PROMPT = 3000  # three chunks under a 1024-token step budget


def _engine() -> Engine:
    config = SimConfig(time_scale=1000.0, jitter=0.0, max_num_batched_tokens=1024)
    return Engine(config, config.latency_profile())


def _step(engine: Engine) -> None:
    batch, _ = engine._schedule()
    assert batch, "the engine had work to schedule"
    engine._commit(batch)


def _counters(text: str) -> dict[str, float]:
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name.endswith("_tokens_total")}


def _vllm(engine: Engine) -> dict[str, float]:
    return _counters(render_vllm(engine.snapshot(), engine.stats))


def _sglang(engine: Engine) -> dict[str, float]:
    return _counters(render_sglang(engine.snapshot(), engine.stats))


async def test_vllm_counts_the_prompt_when_its_prefill_completes_once() -> None:
    engine = _engine()
    seq = Sequence("long", PROMPT, [], 3, "length", None, 0)
    engine.submit(seq)
    _step(engine)
    assert seq.status is SeqStatus.RUNNING and 0 < seq.computed < PROMPT
    assert _vllm(engine)["vllm:prompt_tokens_total"] == 0, "admitted, mid-prefill: not counted yet"
    while seq.generated == 0:
        _step(engine)
    assert _vllm(engine)["vllm:prompt_tokens_total"] == PROMPT
    while not seq.done:
        _step(engine)
    assert _vllm(engine) == {"vllm:prompt_tokens_total": PROMPT, "vllm:generation_tokens_total": 3}


async def test_vllm_does_not_count_a_prompt_aborted_during_its_prefill() -> None:
    engine = _engine()
    seq = Sequence("gone", PROMPT, [], 3, "length", None, 0)
    engine.submit(seq)
    _step(engine)
    engine.abort(seq)
    other = Sequence("next", 10, [], 1, "length", None, 0)
    engine.submit(other)
    while not other.done:
        _step(engine)
    assert _vllm(engine)["vllm:prompt_tokens_total"] == 10


async def test_sglang_counts_prompt_and_generation_tokens_when_the_request_finishes() -> None:
    engine = _engine()
    seq = Sequence("long", PROMPT, [], 3, "length", None, 0)
    engine.submit(seq)
    while seq.generated < 2:
        _step(engine)
    assert _sglang(engine) == {"sglang:prompt_tokens_total": 0, "sglang:generation_tokens_total": 0,
                               "sglang:cached_tokens_total": 0}
    while not seq.done:
        _step(engine)
    assert _sglang(engine)["sglang:prompt_tokens_total"] == PROMPT
    assert _sglang(engine)["sglang:generation_tokens_total"] == 3


async def test_sglang_counts_cached_tokens_when_the_request_finishes() -> None:
    engine = _engine()
    hashes = list(range(1, PROMPT // engine.config.block_size + 1))
    first = Sequence("first", PROMPT, hashes, 1, "length", None, 0)
    engine.submit(first)
    while not first.done:
        _step(engine)
    again = Sequence("again", PROMPT, hashes, 3, "length", None, 0)
    engine.submit(again)
    _step(engine)
    assert again.cached_tokens > 0, "the second request hit the first one's blocks"
    assert _sglang(engine)["sglang:cached_tokens_total"] == 0, "admitted, not finished: not counted yet"
    while not again.done:
        _step(engine)
    assert _sglang(engine)["sglang:cached_tokens_total"] == again.cached_tokens
