"""The exact block index of one endpoint, built from its KV events, and whether it can be trusted.

The index holds the hashes of the blocks the engine reported as stored and not since removed
(GPU tier only: events for another ``medium``, e.g. a CPU offload tier, are counted and
ignored). It is *reliable* only while it has seen every batch since a known starting point:

- a publisher's first batch (sequence 0) starts from an empty cache (the engine just started);
- ``AllBlocksCleared`` empties the cache, so everything after it is known;
- a gap in the sequence that a replay did not fill, a lost connection, or a first batch that
  is not sequence 0 (we joined late, without a replay) make it unreliable.

An unreliable index keeps applying events (its contents are a lower bound) but consumers should
fall back to another estimate until it is reliable again.

The index is bounded (``max_blocks``, far above any engine's cache): an index that outgrows it
can only have missed removals, so it is cleared and marked unreliable.
"""

from __future__ import annotations

from dataclasses import dataclass

from infergate.kvevents.events import (
    MEDIUM_GPU,
    AllBlocksCleared,
    BlockHash,
    BlockRemoved,
    BlockStored,
    EventBatch,
)


@dataclass
class IndexStats:
    batches: int = 0
    stored: int = 0
    removed: int = 0
    cleared: int = 0
    other_medium: int = 0
    unknown_events: int = 0
    gaps: int = 0
    replays: int = 0
    decode_errors: int = 0


DEFAULT_MAX_BLOCKS = 1_000_000


class EndpointBlockIndex:
    """Block hashes cached on one endpoint, per its events."""

    def __init__(self, max_blocks: int = DEFAULT_MAX_BLOCKS) -> None:
        self.max_blocks = max_blocks
        self.blocks: set[BlockHash] = set()
        self.block_size: int | None = None  # from the last BlockStored
        self.reliable = False
        self.reason = "no events yet"
        self.last_event_ts: float | None = None
        self.stats = IndexStats()

    def __len__(self) -> int:
        return len(self.blocks)

    def __contains__(self, block_hash: object) -> bool:
        return block_hash in self.blocks

    def mark_unreliable(self, reason: str) -> None:
        self.reliable = False
        self.reason = reason

    def reset(self, reason: str = "publisher started") -> None:
        """Known-empty cache (the engine just started): clear and trust from here on."""
        self.blocks.clear()
        self.reliable = True
        self.reason = reason

    def apply(self, batch: EventBatch) -> None:
        stats = self.stats
        stats.batches += 1
        self.last_event_ts = batch.ts
        blocks = self.blocks
        for event in batch.events:
            if isinstance(event, BlockStored):
                if event.medium not in (None, MEDIUM_GPU):
                    stats.other_medium += 1
                    continue
                blocks.update(event.block_hashes)
                self.block_size = event.block_size
                stats.stored += len(event.block_hashes)
                if len(blocks) > self.max_blocks:
                    blocks.clear()
                    self.mark_unreliable(f"more than {self.max_blocks} blocks: removals were missed")
            elif isinstance(event, BlockRemoved):
                if event.medium not in (None, MEDIUM_GPU):
                    stats.other_medium += 1
                    continue
                for h in event.block_hashes:
                    blocks.discard(h)
                stats.removed += len(event.block_hashes)
            elif isinstance(event, AllBlocksCleared):
                blocks.clear()
                stats.cleared += 1
                self.reliable = True
                self.reason = "AllBlocksCleared"

    def describe(self) -> dict[str, object]:
        """A JSON-able summary (for debugging endpoints and benchmarks)."""
        return {"reliable": self.reliable, "reason": self.reason, "blocks": len(self.blocks),
                "block_size": self.block_size, "last_event_ts": self.last_event_ts, **vars(self.stats)}

    def match_prefix(self, hashes: list[BlockHash]) -> int:
        """How many of ``hashes`` (a prompt's chained block hashes) are cached, from the start."""
        blocks = self.blocks
        n = 0
        for h in hashes:
            if h not in blocks:
                break
            n += 1
        return n
