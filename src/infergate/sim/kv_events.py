"""The simulator's KV events: what its prefix cache stores and evicts, published like vLLM.

Turned on by ``SimConfig.kv_events_endpoint`` (``infergate sim --kv-events-endpoint``). Each
replica runs one ``KvEventPublisher`` (ZMQ PUB, optional replay ROUTER) for as long as it
runs; a restart is a new publisher whose sequence starts again at 0, like a restarted vLLM.

Endpoints: ``tcp://*:PORT`` binds every replica on its own address and PORT (as every pod
binds 5557 on its own IP); ``tcp://HOST:PORT`` binds HOST and ``PORT + replica index`` (vLLM's
data-parallel offset), for replicas that share one address. The topic is
``kv@<replica ip>:<http port>@<model>``.

Events:

- ``BlockStored`` when full blocks enter the prefix cache (consecutive blocks of one request in
  one step form one event; ``parent_block_hash`` is the block before the first). Block hashes
  are the simulator's own chained block hashes (``infergate.sim.tokenizer.block_hashes``: 8
  bytes of blake2b over each block's characters, seeded by the model or adapter name), which an
  EPP reproduces from the prompt text. ``token_ids`` are the ids the simulator's ``/tokenize``
  returns for the block's text (it has no vocabulary), empty for prompts sent as token ids.
- ``BlockRemoved`` when cached blocks are evicted (LRU) or dropped by ``/reset_prefix_cache``.
- ``AllBlocksCleared`` when ``/reset_prefix_cache`` leaves nothing cached.

Events of one event-loop turn (about one engine step) go out as one batch.
"""

from __future__ import annotations

import asyncio

from infergate.kvevents import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KvEvent,
    KvEventPublisher,
    format_topic,
)
from infergate.sim import tokenizer
from infergate.sim.config import SimConfig
from infergate.sim.engine import Engine, Sequence

TOKEN_ID_SPACE = 128_000  # as /tokenize


def replica_endpoint(template: str, host: str, index: int) -> str:
    """The endpoint replica ``index`` on ``host`` binds for ``template`` (see the module doc)."""
    address, _, port = template[len("tcp://"):].rpartition(":")
    if address == "*":
        return f"tcp://{host}:{port}"
    return f"tcp://{address}:{int(port) + index}"


def block_token_ids(seq: Sequence, index: int, block_size: int) -> tuple[int, ...]:
    if seq.prompt_text is None:
        return ()
    width = block_size * tokenizer.CHARS_PER_TOKEN
    text = tokenizer.continued_text(seq.prompt_text, seq.text_start, index * width, (index + 1) * width)
    step = tokenizer.CHARS_PER_TOKEN
    return tuple(tokenizer.prompt_fingerprint([text[i : i + step]]) % TOKEN_ID_SPACE
                 for i in range(0, len(text), step))


class KvEventRecorder:
    """Collects an engine's cache changes into events and publishes them once per loop turn."""

    def __init__(self, publisher: KvEventPublisher, block_size: int) -> None:
        self.publisher = publisher
        self.block_size = block_size
        self._pending: list[KvEvent] = []
        self._run_seq: Sequence | None = None  # the request whose consecutive stored blocks are open
        self._run_first = 0
        self._run_last = -1
        self._removed: list[int] = []
        self._scheduled = False

    # ---- engine and cache hooks ---------------------------------------------------------
    def block_stored(self, seq: Sequence, index: int) -> None:
        if self._removed:
            self._close_removed()
        if self._run_seq is seq and index == self._run_last + 1:
            self._run_last = index
        else:
            self._close_run()
            self._run_seq, self._run_first, self._run_last = seq, index, index
        self._schedule()

    def blocks_removed(self, hashes: list[int]) -> None:
        self._close_run()
        self._removed.extend(hashes)
        self._schedule()

    def all_cleared(self) -> None:
        self._close_run()
        self._close_removed()
        self._pending.append(AllBlocksCleared())
        self._schedule()

    # ---- batching -----------------------------------------------------------------------
    def _close_run(self) -> None:
        seq = self._run_seq
        if seq is None:
            return
        self._run_seq = None
        first, last, bs = self._run_first, self._run_last, self.block_size
        hashes = seq.hashes
        tokens: list[int] = []
        for b in range(first, last + 1):
            tokens.extend(block_token_ids(seq, b, bs))
        self._pending.append(BlockStored(
            block_hashes=tuple(hashes[first : last + 1]),
            parent_block_hash=hashes[first - 1] if first > 0 else None,
            token_ids=tuple(tokens), block_size=bs, lora_id=None, medium="GPU", lora_name=seq.lora,
        ))

    def _close_removed(self) -> None:
        if self._removed:
            self._pending.append(BlockRemoved(tuple(self._removed), "GPU"))
            self._removed = []

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        self._close_run()
        self._close_removed()
        if self._pending and self.publisher.started:
            self.publisher.publish(self._pending)
        self._pending = []


class ReplicaKvEvents:
    """One replica's publisher and recorder, attached to its engine while the replica runs."""

    def __init__(self, publisher: KvEventPublisher, recorder: KvEventRecorder) -> None:
        self.publisher = publisher
        self.recorder = recorder
        self._engine: Engine | None = None

    @classmethod
    async def open(cls, config: SimConfig, host: str, port: int, index: int) -> ReplicaKvEvents:
        assert config.kv_events_endpoint is not None
        replay = config.kv_events_replay_endpoint
        publisher = KvEventPublisher(
            replica_endpoint(config.kv_events_endpoint, host, index),
            replay_endpoint=replica_endpoint(replay, host, index) if replay else None,
            topic=format_topic(f"{host}:{port}", config.model), encoding=config.kv_events_encoding, bind=True,
        )
        await publisher.start()
        return cls(publisher, KvEventRecorder(publisher, config.block_size))

    def attach(self, engine: Engine) -> None:
        self._engine = engine
        engine.kv_events = self.recorder
        engine.kv.observer = self.recorder

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.kv_events = None
            engine.kv.observer = None
        self.recorder.flush()
        await self.publisher.close()
