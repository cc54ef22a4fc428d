"""Helpers for tests that drive simulator replicas over HTTP: scrape /metrics, time a streamed completion.

Imported by the simulator tests and by other test packages (``from ..sim.support import ...``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource
from prometheus_client.parser import text_string_to_metric_families


async def scrape(client: httpx.AsyncClient, url: str) -> dict[str, float]:
    """Every sample of ``url``/metrics, parsed with ``prometheus_client``'s parser.

    Keys are ``name`` or ``name{k=v,...}`` (labels sorted, ``model_name`` left out).
    """
    response = await client.get(f"{url}/metrics")
    response.raise_for_status()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "model_name")
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


@dataclass(frozen=True)
class StreamResult:
    status: int
    headers: dict[str, str]
    ttft_s: float  # wall seconds from sending to the first chunk with text
    total_s: float
    text: str
    chunks: int
    usage: dict[str, Any] | None
    done: bool  # saw data: [DONE]


async def stream_completion(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> StreamResult:
    """POST a streaming /v1/completions request and time it (first text chunk, end)."""
    payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    usage = None
    chunks = 0
    done = False
    async with client.stream("POST", f"{url}/v1/completions", json=payload) as response:
        if response.status_code != 200:
            await response.aread()
            return StreamResult(response.status_code, dict(response.headers), 0.0, time.perf_counter() - start,
                                response.text, 0, None, False)
        async for event in EventSource(response).aiter_sse():
            if event.data == "[DONE]":
                done = True
                break
            chunk = json.loads(event.data)
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                if choice.get("text"):
                    if first is None:
                        first = time.perf_counter()
                    parts.append(choice["text"])
                    chunks += 1
        headers = dict(response.headers)
    end = time.perf_counter()
    return StreamResult(200, headers, (first or end) - start, end - start, "".join(parts), chunks, usage, done)
