"""The KV-event decoder against hand-built msgpack payloads in both of vLLM's wire forms."""

from __future__ import annotations

import msgpack
import pytest

from infergate.kvevents import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    EventBatch,
    KvEventDecodeError,
    decode_batch,
    encode_batch,
    format_topic,
    parse_topic,
)
from infergate.kvevents.codec import END_OF_REPLAY, decode_seq, encode_seq, split_message

H1, H2, H3 = 2**64 - 1, 12345, 2**63  # uint64 hashes, as vLLM's xxhash/sha-derived ints


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def test_map_form_as_vllm_writes_it() -> None:
    # vLLM >= PR #42892: EventBatch is a map; events are maps tagged by "type"; defaults omitted
    payload = pack({
        "ts": 1765000000.25,
        "events": [
            {"type": "BlockStored", "block_hashes": [H1, H2], "parent_block_hash": None,
             "token_ids": list(range(32)), "block_size": 16, "lora_id": None, "medium": "GPU",
             "lora_name": None},
            {"type": "BlockRemoved", "block_hashes": [H3], "medium": "GPU"},
            {"type": "AllBlocksCleared"},
        ],
        "data_parallel_rank": 0,
    })
    decoded = decode_batch(payload)
    assert decoded.unknown_events == 0
    batch = decoded.batch
    assert batch.ts == 1765000000.25 and batch.data_parallel_rank == 0
    stored, removed, cleared = batch.events
    assert stored == BlockStored((H1, H2), None, tuple(range(32)), 16, None, "GPU", None)
    assert removed == BlockRemoved((H3,), "GPU")
    assert cleared == AllBlocksCleared()


def test_array_form_as_older_vllm_writes_it() -> None:
    # array_like structs, tag first: [ts, events] and ["BlockStored", hashes, parent, tokens, size, lora_id]
    payload = pack([
        1765000000.5,
        [
            ["BlockStored", [H2], H1, [1, 2, 3, 4], 4, None],  # before `medium` existed
            ["BlockStored", [H3], H2, [5, 6, 7, 8], 4, 7, "GPU", "adapter-a"],
            ["BlockRemoved", [H1, H2]],
            ["BlockRemoved", [H3], "CPU"],
            ["AllBlocksCleared"],
        ],
    ])
    batch = decode_batch(payload).batch
    assert batch.data_parallel_rank is None
    first, second, removed, removed_cpu, cleared = batch.events
    assert first == BlockStored((H2,), H1, (1, 2, 3, 4), 4, None, None, None)
    assert second == BlockStored((H3,), H2, (5, 6, 7, 8), 4, 7, "GPU", "adapter-a")
    assert removed == BlockRemoved((H1, H2), None)
    assert removed_cpu == BlockRemoved((H3,), "CPU")
    assert cleared == AllBlocksCleared()


def test_array_batch_with_rank_and_newer_trailing_fields() -> None:
    extra_keys = [None]
    payload = pack([1.0, [["BlockStored", [H1], None, [9] * 16, 16, None, "GPU", None, extra_keys, 0]], 3])
    batch = decode_batch(payload).batch
    assert batch.data_parallel_rank == 3
    (event,) = batch.events
    assert isinstance(event, BlockStored) and event.block_hashes == (H1,)
    assert ("group_idx", 0) in event.extra


def test_bytes_block_hashes_are_kept() -> None:
    digest = bytes(range(32))  # vLLM's sha256-based external hashes are bytes
    payload = pack({"ts": 0, "events": [{"type": "BlockRemoved", "block_hashes": [digest], "medium": None}]})
    (event,) = decode_batch(payload).batch.events
    assert event == BlockRemoved((digest,), None)


def test_unknown_event_types_are_skipped_and_counted() -> None:
    payload = pack({"ts": 0, "events": [{"type": "BlockMoved", "x": 1}, ["SomethingNew", 1],
                                        {"type": "AllBlocksCleared"}]})
    decoded = decode_batch(payload)
    assert decoded.unknown_events == 2
    assert decoded.batch.events == (AllBlocksCleared(),)


@pytest.mark.parametrize(("payload", "message"), [
    (b"\xc1", "not valid msgpack"),
    (pack("hello"), "batch: must be a map"),
    (pack({"events": []}), "needs 'ts' and 'events'"),
    (pack([1.0, {"a": 1}]), "batch.events: must be a list"),
    (pack(["x", []]), "batch.ts: must be a number"),
    (pack([1.0, [["BlockStored", "nope", None, [], 16]]]), "batch.events[0].block_hashes: must be a list"),
    (pack([1.0, [["BlockStored", [1.5], None, [], 16]]]), "block_hashes[0]: a block hash must be"),
    (pack([1.0, [["BlockStored", [1], None, [], 0]]]), "block_size: must be a positive integer"),
    (pack([1.0, [["BlockStored", [1], None, ["a"], 16]]]), "token_ids: must be a list of integers"),
    (pack({"ts": 1, "events": [{"type": "BlockRemoved"}]}), "block_hashes: missing"),
    (pack({"ts": 1, "events": [{"block_hashes": [1]}]}), "the event type tag must be a string"),
    (pack({"ts": 1, "events": [[]]}), "must be a tagged map or a non-empty array"),
])
def test_malformed_batches_are_rejected_with_a_clear_error(payload: bytes, message: str) -> None:
    with pytest.raises(KvEventDecodeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode_batch(payload)


@pytest.mark.parametrize("encoding", ["map", "array"])
def test_encoder_round_trips_in_both_forms(encoding: str) -> None:
    batch = EventBatch(12.5, (
        BlockStored((H1, H2), None, tuple(range(32)), 16, None, "GPU", "lora-x"),
        BlockRemoved((H1,), "GPU"),
        AllBlocksCleared(),
    ), 0)
    payload = encode_batch(batch, encoding)  # type: ignore[arg-type]
    raw = msgpack.unpackb(payload, raw=False)
    if encoding == "map":
        assert raw["events"][0]["type"] == "BlockStored" and raw["data_parallel_rank"] == 0
    else:
        assert raw[1][0][0] == "BlockStored" and raw[1][1] == ["BlockRemoved", [H1], "GPU"]
        assert raw[1][2] == ["AllBlocksCleared"]
    assert decode_batch(payload).batch == batch


def test_encoder_rejects_an_unknown_encoding() -> None:
    with pytest.raises(ValueError, match="encoding"):
        encode_batch(EventBatch(0.0, ()), "json")  # type: ignore[arg-type]


def test_sequence_frames_and_topics() -> None:
    assert encode_seq(5) == b"\x00" * 7 + b"\x05"
    assert decode_seq(encode_seq(2**40)) == 2**40
    assert encode_seq(END_OF_REPLAY) == b"\xff" * 8 and decode_seq(b"\xff" * 8) == END_OF_REPLAY
    with pytest.raises(KvEventDecodeError, match="expected 8 bytes"):
        decode_seq(b"\x01")
    assert split_message([b"kv@1.2.3.4:8000@m", encode_seq(7), b"x"]) == ("kv@1.2.3.4:8000@m", 7, b"x")
    with pytest.raises(KvEventDecodeError, match="expected 3 frames"):
        split_message([b"t", b"x"])
    topic = format_topic("10.0.0.7:8000", "meta-llama/Llama-3.1-8B-Instruct")
    assert topic == "kv@10.0.0.7:8000@meta-llama/Llama-3.1-8B-Instruct"
    assert parse_topic(topic) == ("10.0.0.7:8000", "meta-llama/Llama-3.1-8B-Instruct")
    assert parse_topic("other") is None
