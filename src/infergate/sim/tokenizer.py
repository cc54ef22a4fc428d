"""A deterministic stand-in tokenizer: one token per 4 characters.

Real tokenizers average about 4 characters per English token (OpenAI's rule of thumb; Llama 3's
tiktoken-based vocabulary is close), so prompt lengths stay realistic without shipping a
vocabulary. Everything is a pure function of the text, so token counts and prefix-cache hits
are reproducible across processes and runs:

- ``count(text) = ceil(len(text) / 4)`` (``len`` counts Unicode code points);
- block ``i`` covers characters ``[64 i, 64 i + 64)`` when the block size is 16 tokens, and its
  hash chains the previous block's hash with those characters (blake2b, 8 bytes), seeded by
  the model (or LoRA adapter) name, like vLLM's chained block hashes;
- a chat request is rendered with Llama 3's chat template before counting;
- generated text is a slice of a fixed English text, 4 characters per token, that needs no
  JSON escaping, starting at an offset derived from the prompt.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

CHARS_PER_TOKEN = 4

_SOURCE = (
    "The simulated model answers every request with the same calm prose. It speaks of tokens "
    "and blocks, of queues that grow and shrink, of caches that remember the prefixes they have "
    "seen before. A gateway picks a replica, the replica schedules a step, and the step returns "
    "one more token for every running sequence. Nothing here is sampled from a real network, yet "
    "the timing follows the shape of a real accelerator under load. "
)


def _build_output_text() -> str:
    text = _SOURCE
    while len(text) % CHARS_PER_TOKEN:
        text += " "
    return text


OUTPUT_TEXT = _build_output_text()
_OUTPUT_TOKENS = len(OUTPUT_TEXT) // CHARS_PER_TOKEN
_OUTPUT_DOUBLED = OUTPUT_TEXT * 2


def count_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def render_chat(messages: Sequence[Mapping[str, Any]]) -> str:
    """Llama 3 chat template (without the BOS token), ending with the assistant header."""
    parts = ["<|begin_of_text|>"]
    for message in messages:
        if not isinstance(message, Mapping):
            continue
        role = str(message.get("role", "user"))
        content = message.get("content")
        if isinstance(content, list):  # content parts: keep the text parts
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        elif content is None:
            content = ""
        parts.append(f"<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>")
    parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)


def _seed(namespace: str) -> bytes:
    return hashlib.blake2b(namespace.encode(), digest_size=8).digest()


def block_hashes(text: str, block_size: int, namespace: str) -> list[int]:
    """Chained hashes of the full token blocks of ``text`` (a trailing partial block is not hashed)."""
    width = block_size * CHARS_PER_TOKEN
    full = len(text) // width
    prev = _seed(namespace)
    out: list[int] = []
    for i in range(full):
        digest = hashlib.blake2b(prev + text[i * width : (i + 1) * width].encode(), digest_size=8).digest()
        out.append(int.from_bytes(digest, "little"))
        prev = digest
    return out


def block_hashes_of_ids(token_ids: Sequence[int], block_size: int, namespace: str) -> list[int]:
    """Chained block hashes of a pre-tokenized prompt (``prompt`` given as a list of token ids)."""
    full = len(token_ids) // block_size
    prev = _seed(namespace)
    out: list[int] = []
    for i in range(full):
        chunk = token_ids[i * block_size : (i + 1) * block_size]
        data = struct.pack(f"<{len(chunk)}q", *chunk)
        digest = hashlib.blake2b(prev + data, digest_size=8).digest()
        out.append(int.from_bytes(digest, "little"))
        prev = digest
    return out


def prompt_fingerprint(parts: Iterable[str]) -> int:
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part.encode())
    return int.from_bytes(h.digest(), "little")


def output_text(start: int, first: int, last: int) -> str:
    """The text of generated tokens ``[first, last)`` of a sequence whose text starts at ``start``."""
    out: list[str] = []
    pos = first
    while pos < last:
        offset = (start + pos) % _OUTPUT_TOKENS
        take = min(last - pos, _OUTPUT_TOKENS)
        out.append(_OUTPUT_DOUBLED[offset * CHARS_PER_TOKEN : (offset + take) * CHARS_PER_TOKEN])
        pos += take
    return "".join(out)


def continued_text(prompt: str, text_start: int, lo: int, hi: int) -> str:
    """Characters ``[lo, hi)`` of ``prompt`` followed by the sequence's generated text.

    A chat client sends the previous answer back in the next turn, so the next prompt starts
    with exactly this text; hashing generated blocks over it lets the next turn hit them.
    """
    plen = len(prompt)
    parts: list[str] = []
    if lo < plen:
        parts.append(prompt[lo : min(hi, plen)])
        lo = plen
    if hi > lo:
        first = (lo - plen) // CHARS_PER_TOKEN
        last = -(-(hi - plen) // CHARS_PER_TOKEN)
        out = output_text(text_start, first, last)
        skip = (lo - plen) - first * CHARS_PER_TOKEN
        parts.append(out[skip : skip + (hi - lo)])
    return "".join(parts)


def extend_block_hashes(hashes: list[int], text_of: Callable[[int, int], str], available_chars: int,
                        upto_blocks: int, block_size: int, namespace: str) -> None:
    """Append chained hashes for blocks ``len(hashes) .. upto_blocks - 1`` whose text is available."""
    width = block_size * CHARS_PER_TOKEN
    prev = hashes[-1].to_bytes(8, "little") if hashes else _seed(namespace)
    for b in range(len(hashes), upto_blocks):
        lo = b * width
        if lo + width > available_chars:
            return
        digest = hashlib.blake2b(prev + text_of(lo, lo + width).encode(), digest_size=8).digest()
        hashes.append(int.from_bytes(digest, "little"))
        prev = digest
