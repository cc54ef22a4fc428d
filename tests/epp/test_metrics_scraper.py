"""Metric specs, the minimal Prometheus parser per model-server protocol, the metrics store
(staleness, failures) and the scraper against the real simulator's /metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from infergate.epp.datastore import Datastore, PodInfo, PoolInfo
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsScraper, MetricsStore, parse_metrics
from infergate.epp.model_server_protocol import (
    SGLANG,
    TRITON_TRTLLM,
    VLLM,
    MetricSpec,
    MetricSpecError,
    parse_metric_spec,
    protocol_by_name,
)
from infergate.sim import SimCluster
from infergate.sim.config import SimConfig
from infergate.util.net import free_port, random_loopback_block
from infergate.util.wait import async_wait_until

VLLM_TEXT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 7.0
vllm:num_requests_waiting_extra{model_name="m"} 99.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.42
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="2",running_lora_adapters="",waiting_lora_adapters=""} 1.7e9
vllm:lora_requests_info{max_lora="2",running_lora_adapters="sql-lora,tweet",waiting_lora_adapters="chat"} 1.700000005e9
vllm:lora_requests_info{max_lora="2",running_lora_adapters="old",waiting_lora_adapters=""} 1.6e9
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 5.0
"""


def test_metric_spec_parsing() -> None:
    assert parse_metric_spec("vllm:num_requests_waiting") == MetricSpec("vllm:num_requests_waiting")
    spec = parse_metric_spec(" nv_trt_llm_request_metrics{request_type=waiting, model=\"x\"} ")
    assert spec is not None and spec.name == "nv_trt_llm_request_metrics"
    assert dict(spec.labels) == {"request_type": "waiting", "model": "x"}
    assert str(parse_metric_spec("a{b=c}")) == "a{b=c}"
    assert parse_metric_spec("") is None
    for bad in ("a{b=c", "a}b{", "a{b=c}x", "{b=c}", "a{=c}", "a{b=}", "a{b}", "1abc"):
        with pytest.raises(MetricSpecError):
            parse_metric_spec(bad)


def test_vllm_page() -> None:
    m = parse_metrics(VLLM_TEXT, VLLM, now=10.0)
    assert (m.waiting_queue, m.running, m.kv_cache_usage) == (7, 3, 0.42)
    assert m.active_models == {"sql-lora", "tweet"} and m.waiting_models == {"chat"}  # newest non-empty series
    assert m.max_active_models == 2 and m.update_time == 10.0 and m.missing == ()


def test_vllm_new_kv_name_and_missing_signals_keep_previous() -> None:
    text = 'vllm:kv_cache_usage_perc{model_name="m"} 0.9\n'
    prev = EndpointMetrics(waiting_queue=4, active_models=frozenset({"a"}), max_active_models=1)
    m = parse_metrics(text, VLLM, previous=prev)
    assert m.kv_cache_usage == 0.9
    assert m.waiting_queue == 4 and m.active_models == {"a"}  # kept from the previous scrape
    assert m.missing == ("waiting_queue",)


def test_sglang_and_triton_pages() -> None:
    sglang = 'sglang:num_queue_reqs{model_name="m"} 12\nsglang:token_usage{model_name="m"} 0.25\nsglang:num_running_reqs 2\n'
    m = parse_metrics(sglang, SGLANG)
    assert (m.waiting_queue, m.kv_cache_usage, m.running) == (12, 0.25, 2)
    triton = (
        'nv_trt_llm_request_metrics{model="ensemble",request_type="active",version="1"} 4\n'
        'nv_trt_llm_request_metrics{model="ensemble",request_type="waiting",version="1"} 6\n'
        'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="e"} 100\n'
        'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction",model="e"} 0.5\n'
    )
    m = parse_metrics(triton, TRITON_TRTLLM)
    assert (m.waiting_queue, m.kv_cache_usage, m.running) == (6, 0.5, 4)
    assert protocol_by_name("trtllm") is TRITON_TRTLLM
    with pytest.raises(MetricSpecError, match="model server type"):
        protocol_by_name("tgi")


def test_series_with_timestamps_pick_the_newest_and_escapes() -> None:
    text = ('vllm:num_requests_waiting{model_name="a\\"b"} 1 1000\n'
            'vllm:num_requests_waiting{model_name="c"} 5 2000\n'
            'vllm:gpu_cache_usage_perc 0.1\n')
    m = parse_metrics(text, VLLM)
    assert m.waiting_queue == 5 and m.kv_cache_usage == 0.1


def test_overrides_like_upstream_flags() -> None:
    proto = VLLM.with_overrides(waiting_queue="custom_queue{kind=w}", lora_info="")
    m = parse_metrics('custom_queue{kind="x"} 9\ncustom_queue{kind="w"} 3\n' + VLLM_TEXT, proto)
    assert m.waiting_queue == 3
    assert m.active_models == frozenset()  # LoRA disabled


def test_store_staleness_and_failures() -> None:
    store = MetricsStore(staleness_threshold=1.0, failure_threshold=2)
    seen: list[str] = []
    store.subscribe(seen.append)
    store.update("a:1", EndpointMetrics(waiting_queue=1, update_time=100.0))
    assert store.fresh("a:1", now=100.5) is not None
    assert store.fresh("a:1", now=101.5) is None  # stale = unknown, not idle
    assert store.fresh("a:1", now=100.5, max_age=0.2) is None
    assert store.raw("a:1") is not None
    store.fail("a:1")
    assert not store.failing("a:1")
    store.fail("a:1")
    assert store.failing("a:1")
    store.update("a:1", EndpointMetrics(update_time=102.0))
    assert not store.failing("a:1")  # recovered
    assert seen == ["a:1", "a:1"]


@pytest.mark.e2e
@pytest.mark.parametrize("flavor", ["vllm", "sglang"])
async def test_scraper_against_simulator(flavor: str) -> None:
    port = free_port()
    addresses = random_loopback_block(2, port)
    config = SimConfig(model="m", metrics_flavor=flavor, time_scale=20.0)  # type: ignore[arg-type]
    async with SimCluster(config, addresses, port) as cluster:
        ds = Datastore()
        ds.set_pool(PoolInfo("p", selector={"app": "sim"}, target_ports=(port,)))
        ds.replace_pods([PodInfo(f"sim-{i}", a, {"app": "sim"}) for i, a in enumerate(addresses)])
        store = MetricsStore(staleness_threshold=2.0, failure_threshold=2)
        async with MetricsScraper(ds, store, protocol_by_name(flavor), refresh_interval=0.02, timeout=1.0) as scraper:
            assert set(scraper.scraping()) == set(cluster.endpoints)
            await async_wait_until(lambda: all(store.fresh(e) is not None for e in cluster.endpoints),
                                   10, interval=0.02, what="first scrape")
            for e in cluster.endpoints:
                m = store.fresh(e)
                assert m is not None and m.missing == () and m.waiting_queue == 0 and m.kv_cache_usage == 0.0

            # a crashed replica fails its scrapes and is reported failing until it recovers
            victim = cluster.replicas[0]
            await victim.crash()
            await async_wait_until(lambda: store.failing(victim.endpoint),
                                   10, interval=0.02, what="failing after crash")
            assert not store.failing(cluster.replicas[1].endpoint)
            await victim.restart()
            await async_wait_until(lambda: not store.failing(victim.endpoint),
                                   10, interval=0.02, what="recovered after restart")

            # endpoints follow the datastore
            ds.delete_pod("sim-1")
            await asyncio.sleep(0)
            assert list(scraper.scraping()) == [cluster.endpoints[0]]
            assert store.raw(cluster.endpoints[1]) is None


@contextlib.asynccontextmanager
async def scraped_replica(
    config: SimConfig,
) -> AsyncIterator[tuple[str, MetricsStore, Callable[[int, dict[str, Any]], None]]]:
    """One simulator replica scraped every 20 ms: its endpoint, the store, and ``send(n, body)``,
    which starts ``n`` completions in the background (cancelled on exit)."""
    port = free_port()
    (address,) = random_loopback_block(1, port)
    async with SimCluster(config, [address], port) as cluster:
        ds = Datastore()
        ds.set_pool(PoolInfo("p", selector=None, target_ports=(port,)))
        ds.upsert_pod(PodInfo("sim-0", address))
        store = MetricsStore()
        tasks: list[asyncio.Task[None]] = []
        async with MetricsScraper(ds, store, refresh_interval=0.02), aiohttp.ClientSession() as http:
            async def one(body: dict[str, Any]) -> None:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.post(f"{cluster.urls[0]}/v1/completions", json=body) as r:
                        await r.read()

            def send(count: int, body: dict[str, Any]) -> None:
                tasks.extend(asyncio.create_task(one(body)) for _ in range(count))

            try:
                yield cluster.endpoints[0], store, send
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.e2e
async def test_scraper_sees_simulator_load() -> None:
    config = SimConfig(model="m", time_scale=1.0, max_num_seqs=1, mean_output_tokens=2000)
    async with scraped_replica(config) as (endpoint, store, send):
        send(4, {"model": "m", "prompt": "hello " * 20, "max_tokens": 2000, "ignore_eos": True})
        await async_wait_until(lambda: (store.fresh(endpoint) or EndpointMetrics()).waiting_queue >= 2,
                               10, interval=0.02, what="queued requests visible in scraped metrics")
        m = store.fresh(endpoint)
        assert m is not None and m.running == 1 and m.kv_cache_usage > 0


@pytest.mark.e2e
async def test_scraper_reads_simulator_lora_state() -> None:
    config = SimConfig(model="m", lora_adapters=("sql-lora", "tweet-lora"), max_loras=2, time_scale=1.0)
    async with scraped_replica(config) as (endpoint, store, send):
        send(1, {"model": "sql-lora", "prompt": "select " * 20, "max_tokens": 3000, "ignore_eos": True})
        await async_wait_until(lambda: "sql-lora" in (store.fresh(endpoint) or EndpointMetrics()).active_models,
                               10, interval=0.02, what="running adapter visible in scraped metrics")
        m = store.fresh(endpoint)
        assert m is not None and m.max_active_models == 2 and "tweet-lora" not in m.active_models
