"""The migration's measurements: a streamed probe's time to first token (read as server-sent
events) and the EPP request counters (read from its Prometheus page)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from tests.support.aiohttp_server import served

from infergate.epp.metrics import EppMetrics
from infergate.migrate.probe import DowntimeMonitor, epp_counts, parse_counters, probe_once

FIRST_TOKEN_S = 0.3


async def completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if body["model"] == "unknown":
        return web.json_response({"error": {"message": "model not found"}}, status=404)
    response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8",
                                           "x-inference-pod": "pod-a"})
    await response.prepare(request)
    await response.write(b": keep-alive comment, not a token\n\n")
    await asyncio.sleep(FIRST_TOKEN_S)
    for text in ("Hello", " world"):
        chunk = {"choices": [{"index": 0, "text": text}]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    return response


async def metrics_page(request: web.Request) -> web.Response:
    metrics = EppMetrics()
    metrics.request_total.labels("llama", "llama").inc(7)
    metrics.request_total.labels("food-review", "food-review-1").inc(3)
    metrics.request_error_total.labels("llama", "llama", "404").inc(2)
    return web.Response(body=metrics.render(), content_type="text/plain")


async def not_metrics(request: web.Request) -> web.Response:
    return web.Response(text="<html>this is not a metrics page</html>", content_type="text/html")


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/html", not_metrics)
    async with served(app) as url:
        yield url


async def test_time_to_first_token_is_the_first_data_event(server: str) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        sample = await probe_once(client, server, "llama")
    assert (sample.model, sample.status, sample.pod) == ("llama", 200, "pod-a")
    assert sample.ttft_s is not None and FIRST_TOKEN_S <= sample.ttft_s < FIRST_TOKEN_S + 0.5


async def test_an_error_answer_has_a_status_and_no_first_token(server: str) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        sample = await probe_once(client, server, "unknown")
        unreachable = await probe_once(client, "http://127.0.0.1:9", "llama")
    assert (sample.status, sample.ttft_s) == (404, None)
    assert (unreachable.status, unreachable.ttft_s) == (0, None)


def test_counters_sum_every_label_set_of_the_request_and_error_counters() -> None:
    metrics = EppMetrics()
    metrics.request_total.labels("llama", "llama").inc(7)
    metrics.request_total.labels("food-review", "food-review-1").inc(3)
    metrics.request_error_total.labels("llama", "llama", "404").inc(2)
    metrics.request_duration.labels("llama", "llama").observe(0.5)
    page = metrics.render().decode()
    assert "inference_model_request_created" in page  # a sample parse_counters must not count
    assert parse_counters(page) == 12.0
    assert parse_counters(page, ("inference_model_request_total",)) == 10.0
    assert parse_counters("# HELP x y\n") == 0.0


async def test_epp_counts_per_pool_none_for_a_page_that_is_not_metrics(server: str) -> None:
    counts = await epp_counts({"a": f"{server}/metrics", "b": f"{server}/html", "c": f"{server}/missing",
                               "d": "http://127.0.0.1:9/metrics"})
    assert counts == {"a": 12.0, "b": None, "c": None, "d": None}


async def test_the_downtime_monitor_measures_an_outage_from_its_first_failure_to_the_first_success_after() -> None:
    """The simple path's monitor (its figure is the README's): one request every 0.1 s; an outage of
    0.6 s in the middle is counted and measured, and service is restored once 5 answers in a row pass."""
    outage = asyncio.Event()

    async def answer(request: web.Request) -> web.StreamResponse:
        if outage.is_set():
            return web.json_response({"error": {"message": "no backend"}}, status=503)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": [{"index": 0, "text": "x"}]}\n\ndata: [DONE]\n\n')
        return response

    app = web.Application()
    app.router.add_post("/v1/completions", answer)
    async with served(app) as url:
        monitor = DowntimeMonitor(url, "llama")
        try:
            monitor.start()
            await asyncio.sleep(0.5)
            outage.set()
            await asyncio.sleep(0.6)
            outage.clear()
            assert await monitor.wait_restored(5.0)
        finally:
            await monitor.stop()
    summary = monitor.summary()
    assert isinstance(summary["failed"], int) and 3 <= summary["failed"] <= 8, summary
    assert 0.4 <= monitor.downtime_s() <= 1.2, summary
    assert [ok for _, ok in monitor.results][-5:] == [True] * 5
