"""Scrapes ask for only the series they read (``name[]``, as prometheus_client's exposition in
vLLM and SGLang honours it), and fall back to the whole page where a server does not."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from infergate.epp.datastore import Datastore, PodInfo, PoolInfo
from infergate.epp.metrics_scraper import MetricsScraper, MetricsStore, parse_metrics
from infergate.epp.model_server_protocol import SGLANG, VLLM, protocol_by_name
from infergate.sim.metrics import EngineSnapshot, EngineStats, render_sglang, render_vllm
from infergate.util.net import free_port, random_loopback_block
from infergate.util.wait import async_wait_until

FULL_PAGE = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 5.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="m"} 0.25
"""


def _snapshot() -> tuple[EngineSnapshot, EngineStats]:
    snap = EngineSnapshot(model="m", running=3, waiting=4, kv_usage=0.5, running_loras=("a",), waiting_loras=(),
                          max_loras=2, block_size=16, num_blocks=100, used_blocks=50, prefix_caching=True,
                          max_num_seqs=8, max_num_batched_tokens=2048)
    stats = EngineStats(max_model_len=4096)
    stats.ttft.observe(0.2)
    return snap, stats


@pytest.mark.parametrize(("render", "protocol"), [(render_vllm, VLLM), (render_sglang, SGLANG)])
def test_the_simulator_restricts_its_page_like_prometheus_client(render: Callable[..., str], protocol: object) -> None:
    snap, stats = _snapshot()
    full = render(snap, stats)
    names = frozenset(protocol.metric_names())  # type: ignore[attr-defined]
    restricted = render(snap, stats, names)
    assert len(restricted) < len(full) / 4
    samples = [line.split("{", 1)[0].split(" ", 1)[0] for line in restricted.splitlines() if not line.startswith("#")]
    assert samples and set(samples) <= names
    parsed_full = parse_metrics(full, protocol, now=1.0)  # type: ignore[arg-type]
    parsed_restricted = parse_metrics(restricted, protocol, now=1.0)  # type: ignore[arg-type]
    assert parsed_restricted == parsed_full and parsed_full.missing == ()
    assert render(snap, stats, frozenset({"nothing"})) == ""  # as prometheus_client: an empty page


def test_histogram_restricted_to_some_of_its_samples_matches_prometheus_client() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("vllm:time_to_first_token_seconds", "h", ["model_name"], registry=registry)
    histogram.labels("m").observe(0.2)
    expected = generate_latest(registry.restricted_registry(["vllm:time_to_first_token_seconds_count"])).decode()
    snap, stats = _snapshot()
    ours = render_vllm(snap, stats, frozenset({"vllm:time_to_first_token_seconds_count"}))
    sample = [line for line in ours.splitlines() if not line.startswith("#")]
    theirs = [line for line in expected.splitlines() if not line.startswith("#")]
    assert [s.split("{")[0] for s in sample] == [t.split("{")[0] for t in theirs] == [
        "vllm:time_to_first_token_seconds_count"]


@contextlib.asynccontextmanager
async def metrics_server(handler: Callable[[web.Request], web.Response]) -> AsyncIterator[tuple[str, int, list[str]]]:
    """A /metrics server on a private loopback address; yields (address, port, request paths)."""
    port = free_port()
    (address,) = random_loopback_block(1, port)
    seen: list[str] = []

    async def metrics(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return handler(request)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, address, port)
    await site.start()
    try:
        yield address, port, seen
    finally:
        await runner.cleanup()


def prometheus_client_page(request: web.Request) -> web.Response:
    """What vLLM's /metrics (prometheus_client's ASGI app) answers, ``name[]`` included."""
    registry = CollectorRegistry()
    for name, value in (("vllm:num_requests_running", 2), ("vllm:num_requests_waiting", 5),
                        ("vllm:kv_cache_usage_perc", 0.25), ("vllm:num_preemptions", 9)):
        Gauge(name, "x", ["model_name"], registry=registry).labels("m").set(value)
    names = parse_qs(urlsplit(request.path_qs).query).get("name[]")
    chosen = registry.restricted_registry(names) if names else registry
    return web.Response(body=generate_latest(chosen), content_type="text/plain")


async def scrape_one(address: str, port: int) -> tuple[MetricsScraper, MetricsStore]:
    ds = Datastore()
    ds.set_pool(PoolInfo("p", selector=None, target_ports=(port,)))
    ds.upsert_pod(PodInfo("pod-0", address))
    store = MetricsStore()
    scraper = MetricsScraper(ds, store, protocol_by_name("vllm"), refresh_interval=0.02, timeout=2.0)
    await scraper.start()
    return scraper, store


@pytest.mark.parametrize("server", ["prometheus-client", "ignores-query", "rejects-query", "empty-when-filtered"])
async def test_filtered_scrapes_and_the_fallback_to_the_whole_page(server: str) -> None:
    def handler(request: web.Request) -> web.Response:
        if server == "prometheus-client":
            return prometheus_client_page(request)
        if request.query_string and server == "rejects-query":
            return web.Response(status=400, text="no queries here")
        if request.query_string and server == "empty-when-filtered":
            return web.Response(text="")
        return web.Response(text=FULL_PAGE)

    async with metrics_server(handler) as (address, port, seen):
        scraper, store = await scrape_one(address, port)
        try:
            endpoint = f"{address}:{port}"
            await async_wait_until(lambda: len(seen) >= 4, 10, interval=0.02, what="four scrapes")
            m = store.fresh(endpoint)
            assert m is not None and (m.waiting_queue, m.running, m.kv_cache_usage) == (5, 2, 0.25), m
            assert not store.failing(endpoint)
            first_query = parse_qs(urlsplit(seen[0]).query)["name[]"]
            assert set(first_query) == set(VLLM.metric_names())
            filtered_later = [s for s in seen[2:] if "?" in s]
            if server in ("prometheus-client", "ignores-query"):  # the series came back: keep filtering
                assert len(filtered_later) == len(seen[2:])
            else:  # one filtered try, then the whole page
                assert seen[1] == "/metrics" and filtered_later == []
        finally:
            await scraper.stop()


async def test_name_filter_off_scrapes_the_plain_path() -> None:
    async with metrics_server(prometheus_client_page) as (address, port, seen):
        ds = Datastore()
        ds.set_pool(PoolInfo("p", selector=None, target_ports=(port,)))
        ds.upsert_pod(PodInfo("pod-0", address))
        store = MetricsStore()
        async with MetricsScraper(ds, store, refresh_interval=0.02, name_filter=False):
            await async_wait_until(lambda: len(seen) >= 2, 10, interval=0.02, what="two scrapes")
        assert set(seen) == {"/metrics"}


async def test_a_server_error_keeps_the_filter() -> None:
    """A 5xx (a model server still starting) is the server's trouble, not a refused query."""
    answers = iter([web.Response(status=503, text="starting"), web.Response(status=503, text="starting")])

    def handler(request: web.Request) -> web.Response:
        return next(answers, None) or prometheus_client_page(request)

    async with metrics_server(handler) as (address, port, seen):
        scraper, store = await scrape_one(address, port)
        try:
            await async_wait_until(lambda: store.fresh(f"{address}:{port}") is not None, 10, interval=0.02,
                                   what="metrics once the server answers")
            assert all("?" in path for path in seen), seen
        finally:
            await scraper.stop()
