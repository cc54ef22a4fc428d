"""The KV-cache events vLLM publishes, as plain frozen dataclasses.

Field names and meanings follow vLLM's ``vllm/distributed/kv_events.py`` (``BlockStored``,
``BlockRemoved``, ``AllBlocksCleared``, ``EventBatch``). Block hashes are whatever the engine
uses as its external block hash: an unsigned 64-bit integer for older vLLM and for
``infergate sim``, or raw bytes for vLLM versions that hash blocks with SHA-256; both are kept
as given (hashable either way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BlockHash = int | bytes

MEDIUM_GPU = "GPU"


@dataclass(frozen=True)
class BlockStored:
    """``block_hashes`` became cached, in prompt order; the first one's parent is ``parent_block_hash``."""

    block_hashes: tuple[BlockHash, ...]
    parent_block_hash: BlockHash | None = None
    token_ids: tuple[int, ...] = ()
    block_size: int = 16
    lora_id: int | None = None  # deprecated in vLLM, kept for older consumers
    medium: str | None = MEDIUM_GPU
    lora_name: str | None = None
    # anything newer vLLM adds (extra_keys, group_idx, kv_cache_spec_kind, ...), kept verbatim
    extra: tuple[tuple[str, Any], ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class BlockRemoved:
    """``block_hashes`` were evicted from the cache (``medium``: where, e.g. ``"GPU"``)."""

    block_hashes: tuple[BlockHash, ...]
    medium: str | None = MEDIUM_GPU
    extra: tuple[tuple[str, Any], ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class AllBlocksCleared:
    """The whole prefix cache was dropped (vLLM's ``reset_prefix_cache``)."""


KvEvent = BlockStored | BlockRemoved | AllBlocksCleared


@dataclass(frozen=True)
class EventBatch:
    """One published message: the events of one engine step (``ts``: Unix seconds)."""

    ts: float
    events: tuple[KvEvent, ...]
    data_parallel_rank: int | None = None
