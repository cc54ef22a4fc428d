"""Approximate prefix-cache scorer, hashed exactly as upstream's ``prefix-cache-scorer``.

The prompt's UTF-8 bytes are cut into ``hashBlockSize`` (64) byte blocks (at most
``maxPrefixBlocksToMatch`` = 256 blocks; a trailing partial block is ignored; a prompt
shorter than one block has no hashes). ``h[0] = xxhash64(target model)``, and for block i
``h[i+1] = xxhash64(block_i ‖ little-endian uint64(h[i]))``. Matching walks the hashes
from the start while some server holds the hash, counting per server; the score is
matched / total hashes. After scheduling (PreRequest) the chosen endpoint's LRU index
(``lruCapacityPerServer`` hashes per endpoint) records all of the request's hashes.
"""

from __future__ import annotations

import struct
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from itertools import chain, takewhile
from typing import Any

import xxhash

from infergate.epp.scheduling.framework import (
    Candidate,
    CycleState,
    Plugin,
    PluginHandle,
    SchedulingRequest,
    SchedulingResult,
)
from infergate.epp.scheduling.plugins.params import check_keys, int_param

DEFAULT_HASH_BLOCK_SIZE = 64
DEFAULT_MAX_PREFIX_BLOCKS = 256
DEFAULT_LRU_CAPACITY_PER_SERVER = 31250

_LE_U64 = struct.Struct("<Q")
_xxh64 = xxhash.xxh64_intdigest


SEGMENT_BLOCKS = 16  # blocks per memoized run of the chain (1 KiB at the default block size)
MEMO_LIMIT = 8192  # memoized segments (about 14 MB at the default block size); cleared when full

# (hash before the segment, the segment's bytes) -> the segment's chained hashes
HashMemo = dict[tuple[int, bytes], tuple[int, ...]]


def _chain(data: bytes | memoryview, prev: int, block_size: int, out: list[int]) -> int:
    pack = _LE_U64.pack
    for start in range(0, len(data) - block_size + 1, block_size):
        prev = _xxh64(bytes(data[start : start + block_size]) + pack(prev))
        out.append(prev)
    return prev


def hash_prompt(prompt: str, target_model: str, block_size: int = DEFAULT_HASH_BLOCK_SIZE,
                max_blocks: int = DEFAULT_MAX_PREFIX_BLOCKS, memo: HashMemo | None = None) -> list[int]:
    """Upstream's ``hashPrompt``: [xxh64(model), chained block hashes...] or [] when too short.

    With ``memo``, runs of ``SEGMENT_BLOCKS`` blocks are looked up by (chain state, bytes)
    before being hashed block by block: prompts that share a prefix (a system prompt, a
    conversation so far) pay one dict lookup per 1 KiB of it instead of 16 Python-level
    hash calls. The hashes are the same either way.
    """
    data = prompt.encode()
    if len(data) < block_size:
        return []
    limit = block_size * max_blocks
    if len(data) > limit:
        data = data[:limit]
    hashes = [_xxh64(target_model.encode())]
    prev = hashes[0]
    if memo is None:
        _chain(data, prev, block_size, hashes)
        return hashes
    segment = block_size * SEGMENT_BLOCKS
    whole = len(data) - len(data) % segment
    for start in range(0, whole, segment):
        key = (prev, data[start : start + segment])
        run = memo.get(key)
        if run is None:
            computed: list[int] = []
            _chain(key[1], prev, block_size, computed)
            if len(memo) >= MEMO_LIMIT:
                memo.clear()
            run = memo[key] = tuple(computed)
        hashes.extend(run)
        prev = run[-1]
    _chain(memoryview(data)[whole:], prev, block_size, hashes)
    return hashes


class PrefixIndexer:
    """hash -> servers holding it, with a per-server LRU of ``capacity`` hashes."""

    def __init__(self, capacity_per_server: int = DEFAULT_LRU_CAPACITY_PER_SERVER) -> None:
        self.capacity = capacity_per_server
        self._servers_by_hash: dict[int, set[str]] = {}
        self._lru: dict[str, OrderedDict[int, None]] = {}

    def get(self, block_hash: int) -> set[str] | None:
        return self._servers_by_hash.get(block_hash)

    def add(self, hashes: list[int], server: str) -> int:
        """Record that ``server`` holds ``hashes``; how many leading ones it held already."""
        lru = self._lru.get(server)
        if lru is None:
            lru = self._lru[server] = OrderedDict()
        by_hash = self._servers_by_hash
        # the leading hashes the server already holds (usually most: a shared prefix) are
        # moved to the LRU's end in one C-level pass; the rest one by one, as before
        known = list(map(lru.__contains__, hashes))
        first_new = known.index(False) if False in known else len(hashes)
        deque(map(lru.move_to_end, hashes[:first_new]), maxlen=0)
        for h in hashes[first_new:]:
            if h in lru:
                lru.move_to_end(h)
                continue
            lru[h] = None
            holders = by_hash.get(h)
            if holders is None:
                by_hash[h] = {server}
            else:
                holders.add(server)
            if len(lru) > self.capacity:
                old, _ = lru.popitem(last=False)
                old_holders = by_hash.get(old)
                if old_holders is not None:
                    old_holders.discard(server)
                    if not old_holders:
                        del by_hash[old]
        return first_new

    def remove_server(self, server: str) -> None:
        lru = self._lru.pop(server, None)
        if lru is None:
            return
        for h in lru:
            holders = self._servers_by_hash.get(h)
            if holders is not None:
                holders.discard(server)
                if not holders:
                    del self._servers_by_hash[h]

    def size(self) -> int:
        return sum(len(lru) for lru in self._lru.values())

    def match_longest_prefix(self, hashes: list[int]) -> dict[str, int]:
        """Upstream's greedy walk: stop at the first hash nobody holds; count per server.

        The walk and the counting run in C (``takewhile`` over the holder sets, ``Counter``
        over their members): a 3,000-token prompt has 188 hashes, held by up to every server.
        """
        holders: Iterable[set[str] | None] = map(self._servers_by_hash.get, hashes)
        return Counter(chain.from_iterable(takewhile(bool, holders)))  # type: ignore[arg-type]  # None stops it


class PrefixCacheScorer(Plugin):
    type_name = "prefix-cache-scorer"
    STATE_KEY = "prefix-cache-scorer"

    def __init__(self, name: str, block_size: int = DEFAULT_HASH_BLOCK_SIZE,
                 max_blocks: int = DEFAULT_MAX_PREFIX_BLOCKS,
                 lru_capacity: int = DEFAULT_LRU_CAPACITY_PER_SERVER) -> None:
        super().__init__(name)
        self.block_size = block_size
        self.max_blocks = max_blocks
        self.indexer = PrefixIndexer(lru_capacity)
        self._memo: HashMemo = {}
        # the last scheduled request's match on the chosen server (upstream's RecordPrefixCacheMatch)
        self.last_hit_ratio = 0.0
        self.last_hit_bytes = 0
        # told of every pick added to the index (hashes, endpoint, the prompt's characters):
        # epp.pick_sharing publishes it
        self.on_indexed: Callable[[list[int], str, int], None] | None = None
        # called before the state that peers' picks feed is read (the index, at each cycle's match;
        # the pick-time load, by the Director's admission): epp.pick_sharing applies the picks queued
        # on its socket
        self.before_read: Callable[[], object] | None = None

    @classmethod
    def create(cls, name: str, params: Mapping[str, Any], handle: PluginHandle) -> PrefixCacheScorer:
        check_keys(params, ("hashBlockSize", "maxPrefixBlocksToMatch", "lruCapacityPerServer"))
        return cls(
            name,
            int_param(params, "hashBlockSize", DEFAULT_HASH_BLOCK_SIZE, nonpositive_default=True),
            int_param(params, "maxPrefixBlocksToMatch", DEFAULT_MAX_PREFIX_BLOCKS, nonpositive_default=True),
            int_param(params, "lruCapacityPerServer", DEFAULT_LRU_CAPACITY_PER_SERVER, nonpositive_default=True),
        )

    def match(self, state: CycleState, request: SchedulingRequest) -> tuple[list[int], dict[str, int]]:
        """The request's block hashes and matched blocks per server, computed once per cycle."""
        entry = state.get(self.STATE_KEY)
        if entry is None:
            if self.before_read is not None:
                self.before_read()
            hashes = hash_prompt(request.prompt, request.target_model, self.block_size, self.max_blocks,
                                 self._memo)
            matched = self.indexer.match_longest_prefix(hashes) if hashes else {}
            entry = state[self.STATE_KEY] = (hashes, matched)
        return entry  # type: ignore[no-any-return]

    def score(self, state: CycleState, request: SchedulingRequest, candidates: list[Candidate]) -> list[float]:
        hashes, matched = self.match(state, request)
        total = len(hashes)
        if not total or not matched:
            return [0.0] * len(candidates)
        get = matched.get
        return [get(c.hostport, 0) / total for c in candidates]

    def pre_request(self, state: CycleState, request: SchedulingRequest, result: SchedulingResult) -> None:
        entry = state.get(self.STATE_KEY)
        if entry is None:  # not scored in this cycle (e.g. another profile): hash now
            hashes = hash_prompt(request.prompt, request.target_model, self.block_size, self.max_blocks,
                                 self._memo)
            matched: dict[str, int] = {}
        else:
            hashes, matched = entry
        target = result.primary.targets[0].hostport
        if hashes:
            hit = matched.get(target, 0)
            self.last_hit_ratio = hit / len(hashes)
            self.last_hit_bytes = hit * self.block_size
            self.indexer.add(hashes, target)
            if self.on_indexed is not None:
                self.on_indexed(hashes, target, len(request.prompt))
