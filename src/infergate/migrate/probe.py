"""Measurements for the gates: probe requests through the gateway, per-EPP request counters,
and a downtime monitor for the simple path."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx
from httpx_sse import EventSource
from prometheus_client.parser import text_string_to_metric_families

from infergate.migrate.gates import Sample, Window
from infergate.util.tls import default_verify_context
from infergate.util.wait import WaitTimeout, async_wait_until

# Requests an EPP saw: scheduled ones and the ones it answered with an error (404, 429, ...).
EPP_COUNTERS = ("inference_model_request_total", "inference_model_request_error_total")
PROMPT = "Migration probe: reply with one short sentence."


async def probe_once(client: httpx.AsyncClient, base_url: str, model: str, *, max_tokens: int = 8) -> Sample:
    body = {"model": model, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    start = time.monotonic()
    try:
        async with client.stream("POST", f"{base_url}/v1/completions", json=body) as response:
            ttft: float | None = None
            if _is_event_stream(response):
                async for event in EventSource(response).aiter_sse():
                    if ttft is None and event.data != "[DONE]":
                        ttft = time.monotonic() - start
            else:  # an error answer (JSON or text): no tokens
                await response.aread()
            return Sample(model, response.status_code, ttft, response.headers.get("x-inference-pod"))
    except httpx.HTTPError:
        return Sample(model, 0, None, None)


def _is_event_stream(response: httpx.Response) -> bool:
    return str(response.headers.get("content-type", "")).partition(";")[0].strip() == "text/event-stream"


async def probe(base_url: str, models: Sequence[str], count: int, *, concurrency: int = 8,
                timeout_s: float = 30.0) -> list[Sample]:
    """``count`` streamed /v1/completions requests, round-robin over ``models``."""
    if count <= 0 or not models:
        return []
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(verify=default_verify_context(), timeout=timeout_s) as client:
        async def one(i: int) -> Sample:
            async with semaphore:
                return await probe_once(client, base_url, models[i % len(models)])

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def parse_counters(text: str, names: Sequence[str] = EPP_COUNTERS) -> float:
    """The sum of the samples named ``names`` (over all their labels) on a Prometheus text page;
    ValueError for a page that is not in the exposition format."""
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name in names)


async def epp_counts(urls: Mapping[str, str], *, timeout_s: float = 5.0) -> dict[str, float | None]:
    """Request counters per pool from each pool's EPP /metrics; None for an unreachable EPP."""
    out: dict[str, float | None] = {}
    async with httpx.AsyncClient(verify=default_verify_context(), timeout=timeout_s) as client:
        for pool, url in urls.items():
            try:
                response = await client.get(url)
            except httpx.HTTPError:
                out[pool] = None
                continue
            out[pool] = _counters_of(response)
    return out


def _counters_of(response: httpx.Response) -> float | None:
    """The EPP's request counters; None for an error answer or a page that is not metrics."""
    if response.status_code != 200:
        return None
    try:
        return parse_counters(response.text)
    except ValueError:
        return None


async def measure(base_url: str, models: Sequence[str], count: int, epp_urls: Mapping[str, str]) -> Window:
    """A window: probe requests, with the EPP counters read before and after."""
    before = await epp_counts(epp_urls)
    samples = await probe(base_url, models, count)
    await asyncio.sleep(0.2)  # let counters of the last responses settle
    after = await epp_counts(epp_urls)
    unreachable = tuple(sorted(p for p in epp_urls if before.get(p) is None or after.get(p) is None))
    deltas: dict[str, float] | None = None
    if epp_urls and not unreachable:
        deltas = {pool: max(0.0, (after[pool] or 0.0) - (before[pool] or 0.0)) for pool in epp_urls}
    return Window(tuple(samples), deltas, unreachable)


@dataclass
class DowntimeMonitor:
    """Sends one request every ``interval_s`` and records failures (simple path's downtime)."""

    base_url: str
    model: str
    interval_s: float = 0.1
    results: list[tuple[float, bool]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        async with httpx.AsyncClient(verify=default_verify_context(), timeout=5.0) as client:
            while True:
                started = time.monotonic()
                sample = await probe_once(client, self.base_url, self.model, max_tokens=1)
                self.results.append((started, 200 <= sample.status < 300))
                await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def downtime_s(self) -> float:
        """From the first failed request to the first success after the last failure."""
        failures = [t for t, ok in self.results if not ok]
        if not failures:
            return 0.0
        first, last = failures[0], failures[-1]
        recovered = next((t for t, ok in self.results if ok and t > last), None)
        end = recovered if recovered is not None else self.results[-1][0]
        return max(0.0, end - first)

    async def wait_restored(self, timeout_s: float, successes: int = 5) -> bool:
        """Wait (bounded) until the last ``successes`` requests succeeded: the new stack serves.

        The simple path accepts downtime; its verification checks the state it ends in, so it
        starts once service is back (a new EPP endpoint joins Envoy's EPP cluster only after
        its first health check). Returns False when ``timeout_s`` passes first.
        """
        def restored() -> bool:
            tail = self.results[-successes:]
            return len(tail) == successes and all(ok for _, ok in tail)

        try:
            held: bool = await async_wait_until(restored, timeout_s, interval=self.interval_s,
                                                what="service restored")
        except WaitTimeout:
            return False
        return held

    def summary(self) -> dict[str, object]:
        return {"requests": len(self.results), "failed": sum(1 for _, ok in self.results if not ok),
                "downtimeS": round(self.downtime_s(), 3)}


def dumps(window: Window) -> str:
    return json.dumps({"samples": len(window.samples), "poolRequests": window.pool_requests})
