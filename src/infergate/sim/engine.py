"""The simulated engine of one replica: a continuous-batching step loop like vLLM v1's.

Each step the scheduler (1) gives every running sequence its next tokens (one for a decoding
sequence, a prompt chunk for a prefilling one) within the token budget
``max_num_batched_tokens``, preempting the newest running sequence when the KV cache has no
block left (the preempted sequence goes back to the head of the queue and is recomputed), then
(2) admits waiting sequences in FIFO order while there is room (``max_num_seqs``), budget, KV
blocks and a LoRA slot (a sequence whose adapter cannot join the batch is passed over and keeps
its place). The step's duration comes from ``infergate.sim.latency``; the loop sleeps until the
step's end (absolute deadlines, so tiny scaled steps do not drift), then commits it: computed
tokens, cached prompt blocks, one new token per sequence that completed its input.
Nothing runs while the engine is idle or stalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from enum import Enum
from typing import Protocol

from infergate.sim.config import LatencyProfile, SimConfig
from infergate.sim.kvcache import Block, BlockManager
from infergate.sim.latency import StepShape, step_time
from infergate.sim.metrics import EngineSnapshot, EngineStats
from infergate.sim.tokenizer import CHARS_PER_TOKEN, continued_text, extend_block_hashes

log = logging.getLogger(__name__)

MAX_LAG_S = 0.05  # wall seconds the step clock may fall behind before it stops catching up
CATCH_UP_YIELD = 8  # steps run back to back (when behind) before yielding to the event loop
LORA_SCAN_LIMIT = 256  # waiting sequences examined per step when adapters block the head


class StoredBlockSink(Protocol):
    def block_stored(self, seq: Sequence, index: int) -> None:
        """Block ``index`` of ``seq`` (hash ``seq.hashes[index]``) entered the prefix cache."""
        ...


class SeqStatus(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"
    FAILED = "failed"


class QueueFull(Exception):
    pass


class Sequence:
    """One request inside the engine. Times are model seconds since the engine started."""

    __slots__ = (
        "arrival", "blocks", "cached_tokens", "computed", "error", "finish_reason", "finished_at",
        "first_scheduled_at", "first_token_at", "generated", "hashed_blocks", "hashes", "last_token_at",
        "lora", "max_output", "namespace", "notified", "output_finish_reason", "prompt_text", "prompt_tokens",
        "request_id", "status", "text_start", "waiter",
    )

    def __init__(self, request_id: str, prompt_tokens: int, hashes: list[int], max_output: int,
                 output_finish_reason: str, lora: str | None, text_start: int, *,
                 prompt_text: str | None = None, namespace: str = "") -> None:
        self.request_id = request_id
        # With the prompt text, blocks of generated tokens are hashed (and cached) too, over the
        # prompt + output text, so a next chat turn that repeats the answer hits them.
        self.prompt_text = prompt_text
        self.namespace = namespace
        self.prompt_tokens = prompt_tokens
        self.hashes = hashes
        self.max_output = max_output
        self.output_finish_reason = output_finish_reason  # "length" or "stop" once max_output is reached
        self.lora = lora
        self.text_start = text_start
        self.status = SeqStatus.WAITING
        self.computed = 0
        self.generated = 0
        self.blocks: list[Block] = []
        self.hashed_blocks = 0
        self.cached_tokens = 0
        self.arrival = 0.0
        self.first_scheduled_at: float | None = None
        self.first_token_at: float | None = None
        self.last_token_at = 0.0
        self.finished_at: float | None = None
        self.finish_reason: str | None = None
        self.error: str | None = None
        self.notified = 0
        self.waiter: asyncio.Future[None] | None = None

    @property
    def num_tokens(self) -> int:
        """Tokens whose KV must be computed before the next token can be sampled."""
        return self.prompt_tokens + self.generated

    @property
    def done(self) -> bool:
        return self.status in (SeqStatus.FINISHED, SeqStatus.ABORTED, SeqStatus.FAILED)

    async def wait(self, sent: int) -> None:
        """Return once more than ``sent`` tokens exist or the sequence is done."""
        if self.generated > sent or self.done:
            return
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def _notify(self) -> None:
        self.notified = self.generated
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Engine:
    def __init__(self, config: SimConfig, profile: LatencyProfile, *, seed: int = 0) -> None:
        self.config = config
        self.profile = profile
        self.time_scale = config.time_scale
        self.max_num_seqs = profile.max_num_seqs
        self.max_num_batched_tokens = profile.max_num_batched_tokens
        self.max_model_len = profile.max_model_len
        self.max_loras = config.max_loras
        self.kv = BlockManager(profile.num_gpu_blocks, config.block_size,
                               enable_prefix_caching=config.enable_prefix_caching)
        self.stats = EngineStats(max_model_len=profile.max_model_len)
        self.running: list[Sequence] = []
        self.waiting: deque[Sequence] = deque()
        self.running_loras: dict[str, int] = {}
        self.waiting_loras: dict[str, int] = {}
        self.loaded_loras: dict[str, None] = {}  # adapters resident on the "GPU", LRU order
        self.steps = 0
        self._rng = random.Random(seed)
        self._stalled = False
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._origin = 0.0
        self.kv_events: StoredBlockSink | None = None  # hears blocks entering the cache (KV events)

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._origin = loop.time()
        self._task = loop.create_task(self._run(), name="sim-engine")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.fail_all("engine stopped")

    def fail_all(self, reason: str) -> None:
        """Fail every queued and running sequence (a crash): their streams end with an error."""
        for seq in [*self.running, *self.waiting]:
            seq.status = SeqStatus.FAILED
            seq.error = reason
            seq._notify()
        self.running.clear()
        self.waiting.clear()
        self.running_loras.clear()
        self.waiting_loras.clear()

    def now(self) -> float:
        """Model seconds since the engine started."""
        return (asyncio.get_running_loop().time() - self._origin) * self.time_scale

    @property
    def stalled(self) -> bool:
        return self._stalled

    def set_stalled(self, stalled: bool) -> None:
        self._stalled = stalled
        if not stalled:
            self._kick()

    def _kick(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    # ---- requests -----------------------------------------------------------------------
    def submit(self, seq: Sequence) -> None:
        limit = self.config.max_waiting_requests
        if limit is not None and len(self.waiting) >= limit:
            raise QueueFull(f"the waiting queue is full ({limit} requests)")
        seq.arrival = self.now()
        seq.status = SeqStatus.WAITING
        self.waiting.append(seq)
        if seq.lora:
            self.waiting_loras[seq.lora] = self.waiting_loras.get(seq.lora, 0) + 1
        self._kick()

    def abort(self, seq: Sequence) -> None:
        """The client went away: drop the sequence (its blocks are freed at the next step)."""
        if seq.done:
            return
        if seq.status is SeqStatus.WAITING:
            with contextlib.suppress(ValueError):
                self.waiting.remove(seq)
                self._dec(self.waiting_loras, seq.lora)
        seq.status = SeqStatus.ABORTED
        seq.finish_reason = "abort"
        self.stats.requests_finished["abort"] += 1

    def snapshot(self) -> EngineSnapshot:
        return EngineSnapshot(
            model=self.config.model,
            running=len(self.running),
            waiting=len(self.waiting),
            kv_usage=self.kv.usage,
            used_blocks=self.kv.num_used,
            num_blocks=self.kv.num_blocks,
            block_size=self.kv.block_size,
            max_loras=self.max_loras,
            running_loras=tuple(sorted(self.running_loras)),
            waiting_loras=tuple(sorted(self.waiting_loras)),
            max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=self.max_num_batched_tokens,
            prefix_caching=self.kv.enable_prefix_caching,
        )

    def reset_prefix_cache(self) -> int:
        return self.kv.reset_prefix_cache()

    @staticmethod
    def _dec(counts: dict[str, int], key: str | None) -> None:
        if key is None:
            return
        n = counts.get(key, 0) - 1
        if n > 0:
            counts[key] = n
        else:
            counts.pop(key, None)

    # ---- the step loop ------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await self._loop()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not leave every request hanging: fail them, go on
                log.exception("simulated engine step failed; failing in-flight requests")
                for seq in self.running:
                    self.kv.free(seq.blocks)
                    seq.blocks = []
                self.fail_all("internal simulator error")

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        scale = self.time_scale
        next_at = loop.time()
        behind = 0
        while True:
            batch: list[tuple[Sequence, int]] = []
            if not self._stalled and (self.running or self.waiting):
                batch, shape = self._schedule()
            if not batch:
                self._wake = loop.create_future()
                try:
                    await self._wake
                finally:
                    self._wake = None
                next_at = loop.time()
                continue
            duration = step_time(self.profile, shape)
            if self.profile.jitter:
                duration *= min(1.5, max(0.5, self._rng.gauss(1.0, self.profile.jitter)))
            now = loop.time()
            if now - next_at > MAX_LAG_S:
                next_at = now
            next_at += duration / scale
            delay = next_at - now
            if delay > 0:
                behind = 0
                await asyncio.sleep(delay)
            else:
                behind += 1
                if behind >= CATCH_UP_YIELD:
                    behind = 0
                    await asyncio.sleep(0)
            self._commit(batch)

    def _preempt(self, seq: Sequence) -> None:
        self.kv.free(seq.blocks)
        seq.blocks = []
        seq.computed = 0
        seq.hashed_blocks = 0
        seq.status = SeqStatus.WAITING
        self._dec(self.running_loras, seq.lora)
        self.waiting.appendleft(seq)
        if seq.lora:
            self.waiting_loras[seq.lora] = self.waiting_loras.get(seq.lora, 0) + 1
        self.stats.preemptions += 1

    def _schedule(self) -> tuple[list[tuple[Sequence, int]], StepShape]:
        kv = self.kv
        bs = kv.block_size
        shape = StepShape()
        batch: list[tuple[Sequence, int]] = []
        budget = self.max_num_batched_tokens

        # drop sequences aborted by their clients
        if any(s.status is not SeqStatus.RUNNING for s in self.running):
            keep: list[Sequence] = []
            for s in self.running:
                if s.status is SeqStatus.RUNNING:
                    keep.append(s)
                else:
                    kv.free(s.blocks)
                    s.blocks = []
                    self._dec(self.running_loras, s.lora)
            self.running = keep

        # 1. running sequences, oldest first; preempt the newest when blocks run out
        running = self.running
        preempted = False
        i = 0
        while i < len(running) and budget > 0:
            seq = running[i]
            n = min(seq.num_tokens - seq.computed, budget)
            need = -(-(seq.computed + n) // bs) - len(seq.blocks)
            scheduled = True
            while need > kv.num_free:
                victim = running.pop()
                self._preempt(victim)
                preempted = True
                if victim is seq:
                    scheduled = False
                    break
            if not scheduled:
                break
            if need > 0:
                seq.blocks.extend(kv.allocate(need))
            batch.append((seq, n))
            budget -= n
            if seq.generated and n == 1 and seq.computed == seq.num_tokens - 1:
                shape.add_decode(seq.computed + 1)
            else:
                shape.add_prefill(n, seq.computed)
            i += 1

        # 2. admit waiting sequences (FIFO; LoRA-blocked ones are passed over, keeping their place)
        if not preempted:
            waiting = self.waiting
            passed: list[Sequence] = []
            scanned = 0
            while waiting and len(running) < self.max_num_seqs and budget > 0 and scanned < LORA_SCAN_LIMIT:
                seq = waiting[0]
                scanned += 1
                lora = seq.lora
                if lora is not None and lora not in self.running_loras and len(self.running_loras) >= self.max_loras:
                    passed.append(waiting.popleft())
                    continue
                hit: list[Block] = []
                if seq.computed == 0 and not seq.blocks:
                    hit = kv.lookup(seq.hashes, (seq.num_tokens - 1) // bs)
                cached = len(hit) * bs
                n = min(seq.num_tokens - cached, budget)
                need = -(-(cached + n) // bs) - len(hit)
                if need > kv.free_after_taking(hit):
                    break  # no room in the KV cache: wait (FIFO, no overtaking)
                waiting.popleft()
                kv.take(hit)
                seq.blocks = hit + kv.allocate(need)
                seq.computed = cached
                seq.hashed_blocks = len(hit)
                now = self.now()
                if seq.first_scheduled_at is None:
                    seq.first_scheduled_at = now
                    seq.cached_tokens = cached
                    self.stats.queue_time.observe(now - seq.arrival)
                self.stats.prefix_cache_queries += seq.num_tokens
                self.stats.prefix_cache_hits += cached
                seq.status = SeqStatus.RUNNING
                running.append(seq)
                if lora is not None:
                    self._dec(self.waiting_loras, lora)
                    self.running_loras[lora] = self.running_loras.get(lora, 0) + 1
                    if lora in self.loaded_loras:
                        self.loaded_loras[lora] = self.loaded_loras.pop(lora)  # LRU touch
                    else:
                        while len(self.loaded_loras) >= self.max_loras:
                            idle = next((a for a in self.loaded_loras if a not in self.running_loras), None)
                            if idle is None:
                                break
                            del self.loaded_loras[idle]
                        self.loaded_loras[lora] = None
                        shape.lora_loads += 1
                batch.append((seq, n))
                budget -= n
                shape.add_prefill(n, cached)
            if passed:
                waiting.extendleft(reversed(passed))
        return batch, shape

    def _commit(self, batch: list[tuple[Sequence, int]]) -> None:
        now = self.now()
        stats = self.stats
        interval = self.config.stream_interval
        kv = self.kv
        bs = kv.block_size
        produced = 0
        finished = False
        for seq, n in batch:
            if seq.status is not SeqStatus.RUNNING:
                continue  # aborted or preempted-and-failed during the step
            seq.computed += n
            # register newly completed blocks in the prefix cache
            full = seq.computed // bs
            if full > seq.hashed_blocks:
                hashes = seq.hashes
                if full > len(hashes) and seq.prompt_text is not None:
                    self._extend_hashes(seq, full)
                blocks = seq.blocks
                upto = min(full, len(hashes))
                events = self.kv_events
                for b in range(seq.hashed_blocks, upto):
                    if kv.register(blocks[b], hashes[b]) and events is not None:
                        events.block_stored(seq, b)
                seq.hashed_blocks = max(seq.hashed_blocks, upto)
            if seq.computed < seq.num_tokens:
                continue  # mid-prefill chunk
            seq.generated += 1
            produced += 1
            if seq.first_token_at is None:
                seq.first_token_at = now
                stats.ttft.observe(now - seq.arrival)
                # vLLM v1 counts the prompt once, with the request's first output token (the end
                # of its prefill): IterationStats.update_from_output in vllm/v1/metrics/stats.py
                stats.prompt_tokens += seq.prompt_tokens
            else:
                stats.itl.observe(now - seq.last_token_at)
            seq.last_token_at = now
            if seq.generated >= seq.max_output:
                self._finish(seq, now)
                finished = True
            elif seq.generated - seq.notified >= interval:
                seq._notify()
        stats.generation_tokens += produced
        self.steps += 1
        if finished:
            self.running = [s for s in self.running if s.status is SeqStatus.RUNNING]

    def _extend_hashes(self, seq: Sequence, upto_blocks: int) -> None:
        prompt = seq.prompt_text or ""
        start = seq.text_start

        def text_of(lo: int, hi: int) -> str:
            return continued_text(prompt, start, lo, hi)

        # only tokens whose KV is computed: the last sampled token is not, yet
        available = len(prompt) + CHARS_PER_TOKEN * max(0, seq.computed - seq.prompt_tokens)
        extend_block_hashes(seq.hashes, text_of, available, upto_blocks, self.kv.block_size, seq.namespace)

    def _finish(self, seq: Sequence, now: float) -> None:
        seq.status = SeqStatus.FINISHED
        seq.finish_reason = seq.output_finish_reason
        seq.finished_at = now
        self.kv.free(seq.blocks)
        seq.blocks = []
        self._dec(self.running_loras, seq.lora)
        stats = self.stats
        stats.requests_finished[seq.output_finish_reason] = stats.requests_finished.get(seq.output_finish_reason, 0) + 1
        stats.e2e.observe(now - seq.arrival)
        first_scheduled = seq.first_scheduled_at if seq.first_scheduled_at is not None else seq.arrival
        first_token = seq.first_token_at if seq.first_token_at is not None else now
        stats.prefill_time.observe(first_token - first_scheduled)
        stats.decode_time.observe(now - first_token)
        stats.request_prompt_tokens.observe(seq.prompt_tokens)
        stats.request_generation_tokens.observe(seq.generated)
        stats.finished_prompt_tokens += seq.prompt_tokens
        stats.finished_generation_tokens += seq.generated
        stats.finished_cached_tokens += seq.cached_tokens
        seq._notify()
