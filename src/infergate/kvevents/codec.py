"""msgpack encoding of KV-event batches, both wire forms vLLM has used, and the ZMQ frames.

A published message is three ZMQ frames: ``topic`` (UTF-8), the sequence number (8 bytes,
big-endian, unsigned; the replay end marker is ``-1`` signed), and the msgpack payload.

Payload forms (assumptions checked against vLLM's ``vllm/distributed/kv_events.py``; msgspec
structs with ``tag=True`` and ``omit_defaults=True``):

- ``map`` (vLLM since PR #42892, 2026-06): the batch is a map ``{"ts", "events",
  "data_parallel_rank"}`` and each event a map tagged by ``"type"``
  (``{"type": "BlockStored", "block_hashes": [...], ...}``); fields left at their default may
  be absent.
- ``array`` (earlier vLLM, ``array_like=True``): the batch is ``[ts, events]`` or
  ``[ts, events, data_parallel_rank]`` and each event a positional array whose first element
  is the tag, then the fields in declaration order, trailing defaults possibly omitted:
  ``["BlockStored", block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium,
  lora_name, extra_keys, group_idx, kv_cache_spec_kind, kv_cache_spec_sliding_window]``,
  ``["BlockRemoved", block_hashes, medium, group_idx]``, ``["AllBlocksCleared"]``. Versions
  before ``medium`` existed simply end earlier.

The decoder accepts either form for the batch and, independently, for every event. Events of
an unknown type are skipped and counted (a newer engine may add kinds); anything else that
does not fit is a ``KvEventDecodeError`` naming what is wrong, and the whole batch is
rejected (a half-applied batch would corrupt an index silently).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

from infergate.kvevents.events import (
    AllBlocksCleared,
    BlockHash,
    BlockRemoved,
    BlockStored,
    EventBatch,
    KvEvent,
)

Encoding = Literal["map", "array"]
ENCODINGS: tuple[Encoding, ...] = ("map", "array")

END_OF_REPLAY = -1  # the sequence number of the replay end marker

_STORED_FIELDS = ("block_hashes", "parent_block_hash", "token_ids", "block_size", "lora_id", "medium",
                  "lora_name", "extra_keys", "group_idx", "kv_cache_spec_kind", "kv_cache_spec_sliding_window")
_REMOVED_FIELDS = ("block_hashes", "medium", "group_idx")
_STORED_KNOWN = frozenset(_STORED_FIELDS[:7])
_REMOVED_KNOWN = frozenset(_REMOVED_FIELDS[:2])


class KvEventDecodeError(ValueError):
    """A message that is not a KV-event batch (the text says which part is wrong)."""


@dataclass(frozen=True)
class DecodedBatch:
    batch: EventBatch
    unknown_events: int  # events of a type this decoder does not know, skipped


# ---- sequence numbers and frames -------------------------------------------------------
def encode_seq(seq: int) -> bytes:
    return seq.to_bytes(8, "big", signed=seq < 0)


def decode_seq(data: bytes) -> int:
    """The 8-byte big-endian sequence number; the all-ones replay end marker reads as -1."""
    if len(data) != 8:
        raise KvEventDecodeError(f"sequence frame: expected 8 bytes, got {len(data)}")
    if data == b"\xff" * 8:
        return END_OF_REPLAY
    return int.from_bytes(data, "big")


def split_message(frames: Sequence[bytes]) -> tuple[str, int, bytes]:
    """``(topic, seq, payload)`` of a published message (three frames)."""
    if len(frames) != 3:
        raise KvEventDecodeError(f"message: expected 3 frames (topic, sequence, payload), got {len(frames)}")
    topic, seq, payload = frames
    try:
        text = bytes(topic).decode()
    except UnicodeDecodeError:
        raise KvEventDecodeError("topic frame: not UTF-8") from None
    return text, decode_seq(bytes(seq)), bytes(payload)


# ---- decoding ---------------------------------------------------------------------------
def _hash(value: Any, where: str) -> BlockHash:
    if isinstance(value, bool) or not isinstance(value, int | bytes):
        raise KvEventDecodeError(f"{where}: a block hash must be an integer or bytes, got {type(value).__name__}")
    return value


def _hashes(value: Any, where: str) -> tuple[BlockHash, ...]:
    if not isinstance(value, list):
        raise KvEventDecodeError(f"{where}: must be a list of block hashes, got {type(value).__name__}")
    return tuple(_hash(v, f"{where}[{i}]") for i, v in enumerate(value))


def _opt_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise KvEventDecodeError(f"{where}: must be an integer or nil, got {type(value).__name__}")
    return value


def _opt_str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise KvEventDecodeError(f"{where}: must be a string or nil, got {type(value).__name__}")
    return value


def _stored(fields: Mapping[str, Any], where: str) -> BlockStored:
    if "block_hashes" not in fields:
        raise KvEventDecodeError(f"{where}.block_hashes: missing")
    parent = fields.get("parent_block_hash")
    tokens = fields.get("token_ids", [])
    if not isinstance(tokens, list) or any(isinstance(t, bool) or not isinstance(t, int) for t in tokens):
        raise KvEventDecodeError(f"{where}.token_ids: must be a list of integers")
    block_size = fields.get("block_size", 16)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise KvEventDecodeError(f"{where}.block_size: must be a positive integer, got {block_size!r}")
    return BlockStored(
        block_hashes=_hashes(fields["block_hashes"], f"{where}.block_hashes"),
        parent_block_hash=None if parent is None else _hash(parent, f"{where}.parent_block_hash"),
        token_ids=tuple(tokens),
        block_size=block_size,
        lora_id=_opt_int(fields.get("lora_id"), f"{where}.lora_id"),
        medium=_opt_str(fields.get("medium"), f"{where}.medium"),
        lora_name=_opt_str(fields.get("lora_name"), f"{where}.lora_name"),
        extra=tuple((k, v) for k, v in fields.items() if k not in _STORED_KNOWN and v is not None),
    )


def _removed(fields: Mapping[str, Any], where: str) -> BlockRemoved:
    if "block_hashes" not in fields:
        raise KvEventDecodeError(f"{where}.block_hashes: missing")
    return BlockRemoved(
        block_hashes=_hashes(fields["block_hashes"], f"{where}.block_hashes"),
        medium=_opt_str(fields.get("medium"), f"{where}.medium"),
        extra=tuple((k, v) for k, v in fields.items() if k not in _REMOVED_KNOWN and v is not None),
    )


def _positional(names: tuple[str, ...], values: list[Any], where: str) -> dict[str, Any]:
    if len(values) > len(names):  # a newer engine appended fields: keep them under their index
        extra = {f"field{i}": v for i, v in enumerate(values[len(names):], start=len(names))}
    else:
        extra = {}
    return {**dict(zip(names, values, strict=False)), **extra}


def decode_event(raw: Any, where: str = "event") -> KvEvent | None:
    """One event in either form; ``None`` for an event type this decoder does not know."""
    if isinstance(raw, Mapping):
        tag = raw.get("type")
        fields: Mapping[str, Any] = {k: v for k, v in raw.items() if k != "type"}
    elif isinstance(raw, list) and raw:
        tag = raw[0]
        fields = {}
    else:
        raise KvEventDecodeError(f"{where}: must be a tagged map or a non-empty array, got {raw!r:.60}")
    if not isinstance(tag, str):
        raise KvEventDecodeError(f"{where}: the event type tag must be a string, got {tag!r:.40}")
    if tag == "BlockStored":
        if isinstance(raw, list):
            fields = _positional(_STORED_FIELDS, raw[1:], where)
        return _stored(fields, where)
    if tag == "BlockRemoved":
        if isinstance(raw, list):
            fields = _positional(_REMOVED_FIELDS, raw[1:], where)
        return _removed(fields, where)
    if tag == "AllBlocksCleared":
        return AllBlocksCleared()
    return None


def decode_batch(payload: bytes) -> DecodedBatch:
    """Decode one msgpack ``EventBatch`` (map or array form, events in either form)."""
    try:
        raw = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise KvEventDecodeError(f"payload: not valid msgpack ({type(exc).__name__}: {exc})") from None
    if isinstance(raw, Mapping):
        if "ts" not in raw or "events" not in raw:
            raise KvEventDecodeError("batch: a map batch needs 'ts' and 'events'")
        ts, events, rank = raw["ts"], raw["events"], raw.get("data_parallel_rank")
    elif isinstance(raw, list) and 2 <= len(raw) <= 3:
        ts, events = raw[0], raw[1]
        rank = raw[2] if len(raw) == 3 else None
    else:
        raise KvEventDecodeError(f"batch: must be a map or a [ts, events(, rank)] array, got {raw!r:.60}")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise KvEventDecodeError(f"batch.ts: must be a number, got {ts!r:.40}")
    if not isinstance(events, list):
        raise KvEventDecodeError(f"batch.events: must be a list, got {type(events).__name__}")
    decoded: list[KvEvent] = []
    unknown = 0
    for i, item in enumerate(events):
        event = decode_event(item, f"batch.events[{i}]")
        if event is None:
            unknown += 1
        else:
            decoded.append(event)
    return DecodedBatch(EventBatch(float(ts), tuple(decoded), _opt_int(rank, "batch.data_parallel_rank")), unknown)


# ---- encoding ---------------------------------------------------------------------------
def _event_map(event: KvEvent) -> dict[str, Any]:
    if isinstance(event, BlockStored):
        out: dict[str, Any] = {
            "type": "BlockStored", "block_hashes": list(event.block_hashes),
            "parent_block_hash": event.parent_block_hash, "token_ids": list(event.token_ids),
            "block_size": event.block_size, "lora_id": event.lora_id, "medium": event.medium,
            "lora_name": event.lora_name,
        }
        out.update(event.extra)
        return out
    if isinstance(event, BlockRemoved):
        return {"type": "BlockRemoved", "block_hashes": list(event.block_hashes), "medium": event.medium,
                **dict(event.extra)}
    return {"type": "AllBlocksCleared"}


def _event_array(event: KvEvent) -> list[Any]:
    if isinstance(event, BlockStored):
        return ["BlockStored", list(event.block_hashes), event.parent_block_hash, list(event.token_ids),
                event.block_size, event.lora_id, event.medium, event.lora_name]
    if isinstance(event, BlockRemoved):
        return ["BlockRemoved", list(event.block_hashes), event.medium]
    return ["AllBlocksCleared"]


def encode_batch(batch: EventBatch, encoding: Encoding = "map") -> bytes:
    """msgpack bytes of ``batch`` in the chosen wire form (see the module docstring)."""
    if encoding == "map":
        body: Any = {"ts": batch.ts, "events": [_event_map(e) for e in batch.events]}
        if batch.data_parallel_rank is not None:
            body["data_parallel_rank"] = batch.data_parallel_rank
    elif encoding == "array":
        body = [batch.ts, [_event_array(e) for e in batch.events]]
        if batch.data_parallel_rank is not None:
            body.append(batch.data_parallel_rank)
    else:
        raise ValueError(f"encoding: must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


# ---- topics -------------------------------------------------------------------------------
def format_topic(hostport: str, model: str) -> str:
    """The llm-d topic convention ``kv@<pod-ip>:<port>@<model>``."""
    return f"kv@{hostport}@{model}"


def parse_topic(topic: str) -> tuple[str, str] | None:
    """``(hostport, model)`` of a ``kv@<pod-ip>:<port>@<model>`` topic, else ``None``."""
    if not topic.startswith("kv@"):
        return None
    rest = topic[3:]
    hostport, sep, model = rest.partition("@")
    if not sep or not hostport:
        return None
    return hostport, model
