"""The dashboard's JSON API and its sampler: the ring buffer is bounded, the task stops cleanly."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from infergate.dashboard.app import DashboardApp, DashboardServer
from infergate.dashboard.series import SAMPLE_ENV, Sampler, sample_of, sample_window
from infergate.status.model import (
    Backend,
    EndpointStatus,
    PoolStatus,
    RouteRule,
    RouteStatus,
    StatusSnapshot,
    Traffic,
)


def snapshot(n: int) -> StatusSnapshot:
    traffic = Traffic(window_s=2, requests=2.0 * n, errors=0, requests_per_s=float(n), errors_per_s=0.0,
                      error_ratio=0.0, latency_p50_s=0.1, latency_p90_s=0.2, ttft_p50_s=0.05, ttft_p90_s=0.08)
    endpoint = EndpointStatus(name="e0", address="10.0.0.1", port=8000, ready=True, metrics_url="", reachable=True,
                              queue=1, running=2, kv_cache=0.5, ttft_p50_s=0.04,
                              requests_per_s=float(n), errors_per_s=0.5, requests_source="epp")
    pool = PoolStatus(namespace="default", name="chat", group="inference.networking.k8s.io", generation="GA",
                      selector={}, target_ports=[8000], epp="chat-epp:9002", epp_metrics_url=None, epp_reachable=True,
                      epp_error=None, failure_mode="FailClose", accepted=True, endpoints=[endpoint], objectives=[],
                      models=[], traffic=traffic)
    route = RouteStatus(namespace="default", name="r", parents=[], accepted=True, resolved_refs=True, message="",
                        rules=[RouteRule(matches=[], backends=[
                            Backend("inference.networking.k8s.io", "InferencePool", "default", "chat", 100 - n, 1.0)])])
    return StatusSnapshot(source="test", taken_at=f"2026-01-01T00:00:{n:02d}Z", sample_interval_s=2, gateways=[],
                          routes=[route], pools=[pool])


def test_a_sample_has_rates_per_pool_rates_and_load_per_endpoint_and_weights_per_backend() -> None:
    sample = sample_of(snapshot(3)).to_dict()
    assert sample["pools"]["default/chat"]["requests_per_s"] == 3.0
    assert sample["endpoints"]["default/chat e0"] == {"queue": 1, "running": 2, "kv_cache": 0.5, "ttft_p50_s": 0.04,
                                                      "requests_per_s": 3.0, "errors_per_s": 0.5}
    assert sample["weights"] == {"default/r#0 InferencePool chat": 97}


async def test_the_api_serves_the_newest_snapshot_and_a_bounded_series_and_stops_cleanly() -> None:
    count = 0

    async def collect() -> StatusSnapshot:
        nonlocal count
        count += 1
        await asyncio.sleep(0.01)
        return snapshot(count)

    sampler = Sampler(collect, capacity=3, pause_s=0.01)
    server = DashboardServer(DashboardApp(sampler), "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient() as client:
            while count < 6:
                await asyncio.sleep(0.02)
            series = (await client.get(server.url + "api/series")).json()
            assert series["capacity"] == 3 and len(series["samples"]) == 3
            times = [s["at"] for s in series["samples"]]
            assert times == sorted(times)
            status = (await client.get(server.url + "api/status")).json()
            assert status["pools"][0]["name"] == "chat" and status["source"] == "test"
            page = await client.get(server.url)
            assert page.status_code == 200 and 'src="static/dashboard.js"' in page.text
            assert "http" not in page.text.split("<body>")[1].replace("http://www.w3.org", "")  # no CDN
            js = await client.get(server.url + "static/dashboard.js")
            assert js.headers["content-type"].startswith("text/javascript")
            assert (await client.get(server.url + "static/secret.py")).status_code == 404
            assert (await client.get(server.url + "api/migration")).json() is None
    finally:
        await server.stop()
    stopped_at = count
    await asyncio.sleep(0.1)
    assert count == stopped_at  # the background task is gone


async def test_a_failing_reader_is_reported_and_retried() -> None:
    healthy = asyncio.Event()
    failures = 0

    async def collect() -> StatusSnapshot:
        nonlocal failures
        if not healthy.is_set():
            failures += 1
            raise RuntimeError("API server restarting")
        return snapshot(1)

    sampler = Sampler(collect, capacity=2, pause_s=0.01)
    server = DashboardServer(DashboardApp(sampler), "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient() as client:
            while failures < 2:
                await asyncio.sleep(0.01)
            response = await client.get(server.url + "api/status")
            assert response.status_code == 503
            assert response.json() == {"error": "RuntimeError: API server restarting"}
            healthy.set()
            await asyncio.wait_for(sampler.updated.wait(), 5)
            assert (await client.get(server.url + "api/status")).json()["source"] == "test"
    finally:
        await server.stop()


class CountingCollect:
    """A sampler's collect function that counts its calls."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> StatusSnapshot:
        self.count += 1
        return snapshot(self.count % 60)


async def test_an_idle_sampler_pauses_and_a_page_request_resumes_it() -> None:
    collect = CountingCollect()
    sampler = Sampler(collect, capacity=5, pause_s=0.01, idle_after=0.2)
    server = DashboardServer(DashboardApp(sampler), "127.0.0.1", 0)
    await server.start()
    try:
        assert sampler.sampling
        deadline = asyncio.get_running_loop().time() + 5
        while sampler.sampling:
            assert asyncio.get_running_loop().time() < deadline, "the sampler did not pause"
            await asyncio.sleep(0.05)
        paused_at = collect.count
        await asyncio.sleep(0.1)
        assert collect.count == paused_at
        async with httpx.AsyncClient() as client:
            assert (await client.get(server.url + "api/series")).status_code == 200
        assert sampler.sampling
        while collect.count == paused_at:
            await asyncio.sleep(0.01)
    finally:
        await server.stop()
    assert not sampler.sampling


async def test_a_sampler_started_for_the_first_page_samples_nothing_until_a_page_asks() -> None:
    collect = CountingCollect()
    sampler = Sampler(collect, capacity=5, pause_s=0.01, idle_after=5)
    app = DashboardApp(sampler)
    server = DashboardServer(app, "127.0.0.1", 0)
    await server.start()
    await sampler.stop()  # the server started it as a dashboard server does: sample from now on
    sampler.start(on_first_page=True)  # as the gateway's admin port does
    try:
        await asyncio.sleep(0.1)
        assert collect.count == 0 and not sampler.sampling
        async with httpx.AsyncClient() as client:
            assert (await client.get(server.url + "api/status")).status_code == 503  # no sample yet
        deadline = asyncio.get_running_loop().time() + 5
        while collect.count == 0:
            assert asyncio.get_running_loop().time() < deadline, "the first page request did not start sampling"
            await asyncio.sleep(0.01)
        assert sampler.sampling
    finally:
        await server.stop()
    assert not sampler.sampling


def test_the_sampling_window_is_2_s_unless_the_environment_shortens_it() -> None:
    assert sample_window(2.0, {}) == 2.0
    assert sample_window(2.0, {SAMPLE_ENV: " "}) == 2.0
    assert sample_window(2.0, {SAMPLE_ENV: "0.25"}) == 0.25
    for bad in ("0", "-1", "fast", "nan"):
        with pytest.raises(ValueError, match=SAMPLE_ENV):
            sample_window(2.0, {SAMPLE_ENV: bad})


def test_a_sampler_of_a_reader_samples_over_the_window_and_pauses_at_most_half_of_it() -> None:
    class Reader:
        description = "test"

    default = Sampler.for_reader(Reader(), environ={})  # type: ignore[arg-type]
    assert default.pause_s == 1.0
    short = Sampler.for_reader(Reader(), environ={SAMPLE_ENV: "0.2"})  # type: ignore[arg-type]
    assert short.pause_s == 0.1
