"""Prefix hashing exactly as upstream, the per-endpoint LRU indexer and the scorer's behaviour."""

from __future__ import annotations

import struct

import xxhash

from infergate.epp.datastore import Endpoint
from infergate.epp.scheduling.framework import Candidate, ProfileResult, SchedulingRequest, SchedulingResult
from infergate.epp.scheduling.plugins.prefix import PrefixCacheScorer, PrefixIndexer, hash_prompt


def test_hash_chain_matches_upstream_definition() -> None:
    prompt = "a" * 64 + "b" * 64 + "c" * 10  # two full blocks and a partial one (ignored)
    hashes = hash_prompt(prompt, "model-x", 64, 256)
    h0 = xxhash.xxh64_intdigest(b"model-x")
    h1 = xxhash.xxh64_intdigest(b"a" * 64 + struct.pack("<Q", h0))
    h2 = xxhash.xxh64_intdigest(b"b" * 64 + struct.pack("<Q", h1))
    assert hashes == [h0, h1, h2]
    assert hash_prompt("short", "m", 64, 256) == []  # shorter than a block: no hashes
    assert len(hash_prompt("x" * 64 * 300, "m", 64, 256)) == 257  # truncated to 256 blocks (+ the model hash)
    assert hash_prompt("é" * 32, "m", 64, 256) != []  # bytes, not characters: 64 bytes of UTF-8
    assert hash_prompt(prompt, "other-model")[1] != hashes[1]  # the model seeds the chain


def test_indexer_lru_per_server_and_greedy_match() -> None:
    idx = PrefixIndexer(capacity_per_server=3)
    idx.add([1, 2, 3], "a")
    idx.add([1, 2], "b")
    assert idx.match_longest_prefix([1, 2, 3, 4]) == {"a": 3, "b": 2}
    assert idx.match_longest_prefix([9, 1]) == {}  # stops at the first hash nobody holds
    idx.add([4], "a")  # evicts a's least recently used hash (1)
    assert idx.get(1) == {"b"}
    assert idx.match_longest_prefix([1, 2, 3]) == {"b": 2, "a": 2}  # upstream counts every holder per step
    idx.add([2], "a")  # refresh 2; next eviction takes 3
    idx.add([5], "a")
    assert idx.get(3) is None and idx.get(2) == {"a", "b"}
    assert idx.size() == 3 + 2
    idx.remove_server("a")
    assert idx.get(2) == {"b"} and idx.get(5) is None and idx.size() == 2


def cands(n: int) -> list[Candidate]:
    return [Candidate(Endpoint(f"p{i}", f"10.0.0.{i}", 8000)) for i in range(n)]


def test_scorer_prefers_the_endpoint_that_served_the_prefix() -> None:
    scorer = PrefixCacheScorer("prefix")
    cs = cands(3)
    system = "You are a helpful assistant. " * 20  # ~580 bytes
    first = SchedulingRequest("r1", "m", system + "Question one?")
    state: dict[str, object] = {}
    assert scorer.score(state, first, cs) == [0.0, 0.0, 0.0]
    scorer.pre_request(state, first, SchedulingResult({"d": ProfileResult([cs[1]])}, "d"))
    second = SchedulingRequest("r2", "m", system + "Another, much longer and different question? " * 5)
    state = {}
    scores = scorer.score(state, second, cs)
    assert scores[0] == 0.0 and scores[2] == 0.0 and 0.5 < scores[1] < 1.0
    assert scorer.score({}, first, cs)[1] == 1.0  # the same prompt again: full match
    other_model = SchedulingRequest("r3", "other", system + "Question one?")
    assert scorer.score({}, other_model, cs) == [0.0, 0.0, 0.0]


def test_memoized_hashing_gives_the_same_hashes() -> None:
    import random

    rng = random.Random(5)
    memo: dict[tuple[int, bytes], tuple[int, ...]] = {}
    previous = ""
    for _ in range(300):
        text = "".join(rng.choice(("a", "é", "日本", "🙂", "word ")) for _ in range(rng.randint(0, 9000)))
        if rng.random() < 0.6:  # share a prefix with the previous prompt, as conversations do
            text = previous[: rng.randint(0, len(previous))] + text
        previous = text
        block_size, max_blocks = rng.choice(((64, 256), (16, 1000), (100, 10)))
        assert hash_prompt(text, "m", block_size, max_blocks, memo) == hash_prompt(text, "m", block_size, max_blocks)
    assert memo  # segments were memoized and reused


def test_indexer_add_matches_the_one_by_one_lru() -> None:
    """``add`` moves the already-held leading hashes in one pass: the LRU order, the
    evictions and the holders are those of touching every hash in turn."""
    import random
    from collections import OrderedDict

    rng = random.Random(9)
    capacity = 7
    idx = PrefixIndexer(capacity_per_server=capacity)
    reference: dict[str, OrderedDict[int, None]] = {}
    for _ in range(2000):
        server = rng.choice("abc")
        start = rng.randint(0, 12)
        hashes = list(range(start, start + rng.randint(0, 9)))
        if rng.random() < 0.3:
            rng.shuffle(hashes)
        idx.add(hashes, server)
        lru = reference.setdefault(server, OrderedDict())
        for h in hashes:
            lru[h] = None
            lru.move_to_end(h)
            if len(lru) > capacity:
                lru.popitem(last=False)
        for name, expected in reference.items():
            assert list(idx._lru[name]) == list(expected)
        holders = {h: {n for n, lru in reference.items() if h in lru} for h in range(30)}
        assert {h: idx.get(h) or set() for h in range(30)} == holders
