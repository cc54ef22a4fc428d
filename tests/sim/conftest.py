"""Fixtures for the simulator tests: clusters on their own loopback addresses and free ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from infergate.sim import SimCluster, SimConfig
from infergate.util.net import free_port, random_loopback_block

ClusterFactory = Callable[..., Awaitable[SimCluster]]


@pytest.fixture
async def make_cluster() -> AsyncIterator[ClusterFactory]:
    """``await make_cluster(replicas=1, **SimConfig fields)``; every cluster is stopped at teardown."""
    clusters: list[SimCluster] = []

    async def factory(replicas: int = 1, **fields: Any) -> SimCluster:
        fields.setdefault("time_scale", 20.0)
        fields.setdefault("jitter", 0.0)
        config = SimConfig(**fields)
        port = free_port()
        cluster = SimCluster(config, random_loopback_block(replicas, port), port)
        await cluster.start()
        clusters.append(cluster)
        return cluster

    yield factory
    for cluster in clusters:
        await cluster.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30.0) as client:
        yield client


async def metric_values(client: httpx.AsyncClient, url: str) -> dict[str, float]:
    """Every sample of ``url``/metrics parsed with prometheus_client, keyed ``name{labels}``."""
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
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not reached within {timeout}s")
