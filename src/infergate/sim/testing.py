"""Helpers for tests that drive simulator replicas over HTTP (also usable by other components)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx


async def scrape(client: httpx.AsyncClient, url: str) -> dict[str, float]:
    """Every sample of ``url``/metrics, parsed with ``prometheus_client``'s parser.

    Keys are ``name`` or ``name{k=v,...}`` (labels sorted, ``model_name`` left out).
    """
    from prometheus_client.parser import text_string_to_metric_families

    response = await client.get(f"{url}/metrics")
    response.raise_for_status()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "model_name")
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll ``predicate`` until it returns true; ``TimeoutError`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await predicate():
            return
        if loop.time() >= deadline:
            raise TimeoutError(f"condition not reached within {timeout}s")
        await asyncio.sleep(interval)


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
    import json

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
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            chunk = json.loads(data)
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
