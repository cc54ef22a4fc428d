"""KV cache in blocks with automatic prefix caching, modelled on vLLM v1's block pool.

- The cache has ``num_blocks`` blocks of ``block_size`` tokens. A running sequence holds
  blocks for the tokens whose KV has been computed (prompt and generated tokens).
- A full prompt block gets the chained hash of its tokens once computed; a later sequence whose
  prompt starts with the same blocks reuses them (reference count + 1) instead of recomputing.
- Freed blocks that carry a hash stay in the cache, unreferenced, in an LRU list; they count as
  free (vLLM's usage is ``1 - free / total``) and are evicted oldest first when a new block is
  needed. A sequence frees its blocks last-first, so the tail of a prompt is evicted before its
  shared head, as in vLLM.
- An optional ``observer`` hears about cached blocks leaving the cache (eviction, reset); the
  engine reports blocks entering it, for the KV events of ``infergate.sim.kv_events``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Block:
    __slots__ = ("hash", "ref")

    def __init__(self) -> None:
        self.hash: int | None = None
        self.ref = 1


class CacheObserver(Protocol):
    def blocks_removed(self, hashes: list[int]) -> None: ...

    def all_cleared(self) -> None: ...


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, *, enable_prefix_caching: bool = True) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._free_anonymous = num_blocks
        self._cached: dict[int, Block] = {}  # hash -> block (referenced or in the LRU)
        self._lru: dict[Block, None] = {}  # unreferenced cached blocks, oldest first
        self.observer: CacheObserver | None = None

    # ---- accounting -------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        """Blocks that can be handed out now (never used, or cached but unreferenced)."""
        return self._free_anonymous + len(self._lru)

    @property
    def num_used(self) -> int:
        return self.num_blocks - self.num_free

    @property
    def usage(self) -> float:
        return self.num_used / self.num_blocks if self.num_blocks else 0.0

    @property
    def num_cached(self) -> int:
        return len(self._cached)

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    # ---- prefix cache -------------------------------------------------------------------
    def lookup(self, hashes: Sequence[int], max_blocks: int) -> list[Block]:
        """The longest run of cached blocks matching ``hashes`` from the start (no refs taken)."""
        if not self.enable_prefix_caching:
            return []
        hit: list[Block] = []
        cached = self._cached
        for h in hashes[:max_blocks]:
            block = cached.get(h)
            if block is None:
                break
            hit.append(block)
        return hit

    def free_after_taking(self, hit: Sequence[Block]) -> int:
        """Free blocks left once ``hit`` (from ``lookup``) are referenced."""
        lru = self._lru
        return self.num_free - sum(1 for b in hit if b in lru)

    def take(self, hit: Sequence[Block]) -> None:
        lru = self._lru
        for block in hit:
            if block.ref == 0:
                del lru[block]
            block.ref += 1

    # ---- allocation ---------------------------------------------------------------------
    def allocate(self, count: int) -> list[Block]:
        """``count`` new blocks; the caller checked ``num_free`` first."""
        if count > self.num_free:
            raise RuntimeError(f"KV cache: {count} blocks requested, {self.num_free} free")
        out: list[Block] = []
        for _ in range(count):
            if self._free_anonymous:
                self._free_anonymous -= 1
            else:  # evict the least recently used cached block
                victim = next(iter(self._lru))
                del self._lru[victim]
                if victim.hash is not None:
                    del self._cached[victim.hash]
                    if self.observer is not None:
                        self.observer.blocks_removed([victim.hash])
            out.append(Block())
        return out

    def register(self, block: Block, block_hash: int) -> bool:
        """Mark a now-full prompt block as cached under ``block_hash`` (first writer wins);
        True when it entered the cache."""
        if not self.enable_prefix_caching or block.hash is not None or block_hash in self._cached:
            return False
        block.hash = block_hash
        self._cached[block_hash] = block
        return True

    def free(self, blocks: Sequence[Block]) -> None:
        """Release a sequence's blocks, last block first."""
        lru = self._lru
        for block in reversed(blocks):
            block.ref -= 1
            if block.ref > 0:
                continue
            if block.hash is not None:
                lru[block] = None
            else:
                self._free_anonymous += 1

    def reset_prefix_cache(self) -> int:
        """Drop every unreferenced cached block (vLLM's /reset_prefix_cache); returns how many."""
        dropped = len(self._lru)
        removed: list[int] = []
        for block in self._lru:
            if block.hash is not None:
                del self._cached[block.hash]
                removed.append(block.hash)
                block.hash = None
        self._lru.clear()
        self._free_anonymous += dropped
        if self.observer is not None:
            if not self._cached:
                self.observer.all_cleared()
            elif removed:
                self.observer.blocks_removed(removed)
        return dropped
