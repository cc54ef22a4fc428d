"""An open-loop async load generator: streaming completions over raw HTTP (httpx, httpx-sse).

Requests are sent at their planned times whether or not earlier ones finished (open loop,
so a slow router shows up as queueing, not as a lower offered load). Each streamed
response is timed on arrival of its SSE events: time to first token (first event with
text), gaps between text events (inter-token latency, divided by the tokens an event
carries when the usage is known), end-to-end time and output tokens (``usage`` from the
final event when the server sends it, else one token per text event).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from httpx_sse import EventSource

from infergate.bench.workload import PlannedRequest
from infergate.util.tls import default_verify_context


@dataclass
class RequestResult:
    ok: bool
    status: int = 0
    ttft: float | None = None
    e2e: float | None = None
    output_tokens: int = 0
    gaps: list[float] = field(default_factory=list)
    pod: str | None = None  # the replica that served it (x-inference-pod)
    error: str | None = None
    text: str = ""  # the answer's text (a chat's next turn repeats it)


async def stream_completion(client: httpx.AsyncClient, url: str, model: str, request: PlannedRequest,
                            headers: dict[str, str] | None = None) -> RequestResult:
    body = {"model": model, "prompt": request.prompt, "max_tokens": request.max_tokens, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    return await stream_body(client, url, body, headers, RequestResult(ok=False))


R = TypeVar("R", bound=RequestResult)


async def stream_body(client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str] | None,
                      result: R) -> R:
    """POST ``body`` (a streaming completion) and time its answer into ``result``; the one
    reader of the benchmarks' streams (the scheduling benchmark and ``bench peers``)."""
    started = time.perf_counter()
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            result.status = response.status_code
            result.pod = response.headers.get("x-inference-pod")
            if response.status_code != 200:
                result.error = (await response.aread()).decode(errors="replace")[:200]
                return result
            await _time_events(EventSource(response), started, result)
    except httpx.HTTPError as exc:  # SSEError (not an event stream) is one too
        result.error = f"{type(exc).__name__}: {exc}"
    return result


async def _time_events(source: EventSource, started: float, result: RequestResult) -> None:
    """Time the text events of a completion stream into ``result`` (an error event ends it)."""
    last: float | None = None
    events = 0
    usage_tokens: int | None = None
    parts: list[str] = []
    async for sse in source.aiter_sse():
        if sse.data == "[DONE]":
            break
        now = time.perf_counter()
        try:
            event = json.loads(sse.data)
        except ValueError:
            continue
        if "error" in event:
            result.error = str(event["error"])[:200]
            return
        usage = event.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            usage_tokens = usage["completion_tokens"]
        choices = event.get("choices") or []
        text = "".join(str(c.get("text") or "") for c in choices if isinstance(c, dict))
        if not text:
            continue
        parts.append(text)
        events += 1
        if result.ttft is None:
            result.ttft = now - started
        elif last is not None:
            result.gaps.append(now - last)
        last = now
    result.e2e = time.perf_counter() - started
    result.output_tokens = usage_tokens if usage_tokens is not None else events
    if usage_tokens and events and usage_tokens > events:  # several tokens per SSE event
        per_event = usage_tokens / events
        result.gaps = [g / per_event for g in result.gaps]
    result.text = "".join(parts)
    result.ok = result.ttft is not None
    if not result.ok:
        result.error = result.error or "no tokens"


async def run_plan(url: str, model: str, planned: Sequence[PlannedRequest], *, timeout: float = 600.0,
                   headers: dict[str, str] | None = None) -> tuple[list[RequestResult], float]:
    """Send every planned request at its time; returns the results and the wall time used."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=512)
    async with httpx.AsyncClient(verify=default_verify_context(), timeout=httpx.Timeout(timeout, connect=10.0),
                                 limits=limits) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def one(request: PlannedRequest) -> RequestResult:
            delay = start + request.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            return await stream_completion(client, url, model, request, headers)

        results = await asyncio.gather(*(one(r) for r in planned))
        return list(results), loop.time() - start
