"""Engine behaviour without HTTP: scheduling, KV cache, preemption, prefix cache, LoRA."""

from __future__ import annotations

import asyncio

from infergate.sim.config import SimConfig
from infergate.sim.engine import Engine, SeqStatus, Sequence
from infergate.sim.kvcache import BlockManager
from infergate.sim.latency import StepShape, step_time
from infergate.sim.tokenizer import block_hashes


def _engine(**fields) -> Engine:
    fields.setdefault("time_scale", 1000.0)
    fields.setdefault("jitter", 0.0)
    config = SimConfig(**fields)
    return Engine(config, config.latency_profile())


def _seq(name: str, prompt: int, out: int, *, hashes: list[int] | None = None, lora: str | None = None) -> Sequence:
    return Sequence(name, prompt, hashes or [], out, "length", lora, 0)


async def _finish(seqs: list[Sequence], timeout: float = 10.0) -> None:
    async def one(s: Sequence) -> None:
        while not s.done:
            await s.wait(s.generated)

    await asyncio.wait_for(asyncio.gather(*(one(s) for s in seqs)), timeout)


def test_block_manager_prefix_cache_and_lru() -> None:
    kv = BlockManager(4, 16)
    a = kv.allocate(2)
    kv.register(a[0], 11)
    kv.register(a[1], 12)
    assert kv.num_free == 2 and kv.usage == 0.5
    kv.free(a)  # cached blocks stay, unreferenced: they count as free
    assert kv.num_free == 4 and kv.num_cached == 2
    hit = kv.lookup([11, 12, 13], 3)
    assert len(hit) == 2
    assert kv.free_after_taking(hit) == 2
    kv.take(hit)
    assert kv.num_free == 2
    kv.free(hit)
    # allocating everything evicts the cached blocks: the tail block (12) goes first
    kv.allocate(3)
    assert kv.lookup([11, 12], 2) != [] and kv.num_cached == 1
    kv.allocate(1)
    assert kv.num_cached == 0 and kv.num_free == 0


def test_chained_hashes_depend_on_the_whole_prefix() -> None:
    base = "a" * 64 + "b" * 64 + "c" * 64
    other = "z" * 64 + "b" * 64 + "c" * 64
    h1 = block_hashes(base, 16, "m")
    h2 = block_hashes(other, 16, "m")
    assert len(h1) == 3
    assert h1[1] != h2[1] and h1[2] != h2[2], "same block text after a different prefix must not match"
    assert block_hashes(base + "tail", 16, "m") == h1
    assert block_hashes(base, 16, "lora-x") != h1, "adapters do not share cache blocks"



def test_block_hashes_are_stable_for_ascii_and_other_text() -> None:
    """An ASCII text is hashed from one encoding sliced, any other block by block: both give the
    hashes the simulator always gave (stored runs and the EPP's precise index depend on them), and a
    block is 64 characters whatever their byte length."""
    assert block_hashes("a" * 64 + "b" * 64, 16, "m") == [822847908439901850, 13094843015545916272]
    assert block_hashes("ü" * 64 + "b" * 64, 16, "m") == [16686184823349824109, 15600152734915682568]
    assert block_hashes("ü" * 64 + "b" * 63, 16, "m") == block_hashes("ü" * 64, 16, "m")

def test_step_time_grows_with_batch_prefill_and_context() -> None:
    profile = SimConfig().latency_profile()
    small, large, prefill, longctx = StepShape(), StepShape(), StepShape(), StepShape()
    small.add_decode(500)
    for _ in range(256):
        large.add_decode(330)
    prefill.add_prefill(2048, 0)
    for _ in range(256):
        longctx.add_decode(8000)
    t_small, t_large = step_time(profile, small), step_time(profile, large)
    # calibration anchors (docs/sim.md): ~7 ms at batch 1, ~25 ms at batch 256 with ShareGPT contexts
    assert 0.006 < t_small < 0.008
    assert 0.022 < t_large < 0.028
    assert step_time(profile, prefill) > 0.08
    assert step_time(profile, longctx) > t_large


async def test_max_num_seqs_caps_the_batch_and_the_rest_wait_fifo() -> None:
    engine = _engine(max_num_seqs=2)
    engine.start()
    try:
        seqs = [_seq(f"r{i}", 20, 30) for i in range(5)]
        for s in seqs:
            engine.submit(s)
        peak = 0
        while not all(s.done for s in seqs):
            peak = max(peak, len(engine.running))
            assert len(engine.running) <= 2
            await asyncio.sleep(0)
            if engine.steps > 10_000:
                raise AssertionError("engine did not finish")
        assert peak == 2
        finish_order = sorted(seqs, key=lambda s: s.finished_at or 0)
        assert [s.request_id for s in finish_order[:2]] == ["r0", "r1"]
        assert all(s.status is SeqStatus.FINISHED and s.generated == 30 for s in seqs)
    finally:
        await engine.stop()


async def test_kv_exhaustion_preempts_the_newest_running_request() -> None:
    engine = _engine(num_gpu_blocks=8, max_num_seqs=8)
    engine.start()
    try:
        old, new = _seq("old", 32, 60), _seq("new", 32, 60)  # each grows to 6 blocks; 12 > 8
        engine.submit(old)
        engine.submit(new)
        await _finish([old, new])
        assert engine.stats.preemptions >= 1
        assert engine.stats.prompt_tokens == 64, "a recomputed prompt is counted once"
        assert old.finished_at is not None and new.finished_at is not None
        assert old.finished_at < new.finished_at, "the older request keeps running"
        assert old.generated == 60 and new.generated == 60
        assert engine.kv.num_used == 0
    finally:
        await engine.stop()


async def test_kv_full_makes_new_requests_wait() -> None:
    engine = _engine(num_gpu_blocks=10, max_num_seqs=8)
    engine.start()
    try:
        first, second = _seq("a", 120, 40), _seq("b", 120, 40)  # 8 blocks each for the prompt
        engine.submit(first)
        engine.submit(second)
        await asyncio.sleep(0)
        saw_waiting = False
        while not first.done:
            if second.status is SeqStatus.WAITING and first.status is SeqStatus.RUNNING:
                saw_waiting = True
            await first.wait(first.generated)
        assert saw_waiting
        await _finish([second])
        assert (second.first_scheduled_at or 0) >= (first.first_token_at or 0)
    finally:
        await engine.stop()


async def test_prefix_cache_hit_skips_prefill_and_counts() -> None:
    engine = _engine(time_scale=2.0)  # model times come from the wall clock: keep them measurable
    engine.start()
    try:
        hashes = list(range(1, 101))  # 100 full blocks = 1600 tokens
        cold = _seq("cold", 1610, 2, hashes=hashes)
        engine.submit(cold)
        await _finish([cold])
        warm = _seq("warm", 1610, 2, hashes=hashes)
        engine.submit(warm)
        await _finish([warm])
        assert cold.cached_tokens == 0
        assert warm.cached_tokens == 1600
        assert engine.stats.prefix_cache_hits == 1600
        assert engine.stats.prefix_cache_queries == 3220
        cold_ttft = (cold.first_token_at or 0) - cold.arrival
        warm_ttft = (warm.first_token_at or 0) - warm.arrival
        assert warm_ttft * 3 < cold_ttft, (cold_ttft, warm_ttft)  # the model predicts ~8x
    finally:
        await engine.stop()


async def test_lora_slots_limit_adapters_in_a_batch() -> None:
    engine = _engine(max_loras=1, lora_adapters=("a", "b"), max_num_seqs=16)
    engine.start()
    try:
        seqs = [_seq("a1", 10, 40, lora="a"), _seq("b1", 10, 40, lora="b"), _seq("a2", 10, 40, lora="a"),
                _seq("base", 10, 40)]
        for s in seqs:
            engine.submit(s)
        saw_b_waiting = False
        while not all(s.done for s in seqs):
            assert len(engine.running_loras) <= 1
            if "b" in engine.waiting_loras and "a" in engine.running_loras:
                saw_b_waiting = True
            await asyncio.sleep(0)
        assert saw_b_waiting
        by_name = {s.request_id: s for s in seqs}
        # a2 overtakes the blocked b1 (same adapter as the running batch); the base model is never blocked
        assert (by_name["a2"].first_scheduled_at or 0) < (by_name["b1"].first_scheduled_at or 0)
        assert (by_name["base"].first_scheduled_at or 0) < (by_name["b1"].first_scheduled_at or 0)
    finally:
        await engine.stop()


async def test_idle_engine_does_not_step() -> None:
    engine = _engine()
    engine.start()
    try:
        s = _seq("x", 10, 3)
        engine.submit(s)
        await _finish([s])
        steps = engine.steps
        await asyncio.sleep(0.1)
        assert engine.steps == steps
    finally:
        await engine.stop()


async def test_chunked_prefill_spreads_a_long_prompt_and_inflates_co_batched_itl() -> None:
    engine = _engine(max_num_batched_tokens=1024, time_scale=10.0)
    engine.start()
    try:
        decoder = _seq("decoder", 16, 400)
        engine.submit(decoder)
        while decoder.generated < 5:
            await decoder.wait(decoder.generated)
        steps_before = engine.steps
        long = _seq("long", 4000, 1)
        engine.submit(long)
        gaps: list[float] = []
        last = decoder.last_token_at
        while not long.done:
            await decoder.wait(decoder.generated)
            gaps.append(decoder.last_token_at - last)
            last = decoder.last_token_at
        # 4000 prompt tokens under a 1023-token budget (one goes to the decoder) take 4 steps
        assert engine.steps - steps_before >= 4
        assert decoder.status is SeqStatus.RUNNING, "decoding continued between the chunks"
        quiet = step_time(engine.profile, _decode_shape(1, 21))
        assert max(gaps) > 3 * quiet, "a step carrying a prefill chunk is much longer than a decode step"
    finally:
        await engine.stop()


def _decode_shape(batch: int, context: int) -> StepShape:
    shape = StepShape()
    for _ in range(batch):
        shape.add_decode(context)
    return shape


async def test_loading_an_adapter_costs_time_once() -> None:
    # loading costs 3 model seconds (0.75 s wall); a reload would show in the second TTFT, and
    # the 1.5 model-second bound leaves ~0.37 s wall for a loaded machine's scheduling delays
    engine = _engine(time_scale=4.0, lora_adapters=("a",), profile_overrides={"lora_load_s": 3.0})
    engine.start()
    try:
        first = _seq("first", 10, 1, lora="a")
        engine.submit(first)
        await _finish([first])
        second = _seq("second", 10, 1, lora="a")
        engine.submit(second)
        await _finish([second])
        first_ttft = (first.first_token_at or 0) - first.arrival
        second_ttft = (second.first_token_at or 0) - second.arrival
        assert first_ttft >= 3.0
        assert second_ttft < 1.5, "the adapter stayed loaded"
        assert list(engine.loaded_loras) == ["a"]
    finally:
        await engine.stop()


async def test_an_engine_bug_fails_requests_instead_of_hanging(monkeypatch) -> None:
    engine = _engine()
    engine.start()
    try:
        calls = {"n": 0}
        original = engine._commit

        def broken(batch):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("boom")
            original(batch)

        monkeypatch.setattr(engine, "_commit", broken)
        victim = _seq("victim", 10, 50)
        engine.submit(victim)
        await _finish([victim])
        assert victim.status is SeqStatus.FAILED
        survivor = _seq("after", 10, 5)
        engine.submit(survivor)
        await _finish([survivor])
        assert survivor.status is SeqStatus.FINISHED and engine.kv.num_used == 0
    finally:
        await engine.stop()
