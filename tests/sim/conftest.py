"""Fixtures for the simulator tests: clusters on their own loopback addresses and free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from infergate.sim import SimCluster, SimConfig
from infergate.util.net import free_port, random_loopback_block

ClusterFactory = Callable[..., Awaitable[SimCluster]]


@pytest.fixture
async def make_cluster() -> AsyncIterator[ClusterFactory]:
    """``await make_cluster(replicas=1, admin=False, **SimConfig fields)``; every cluster is stopped at
    teardown. ``admin=True`` serves the admin API on a free port (``cluster.admin_url``)."""
    clusters: list[SimCluster] = []

    async def factory(replicas: int = 1, admin: bool = False, **fields: Any) -> SimCluster:
        fields.setdefault("time_scale", 20.0)
        fields.setdefault("jitter", 0.0)
        config = SimConfig(**fields)
        port = free_port()
        cluster = SimCluster(config, random_loopback_block(replicas, port), port,
                             admin_port=free_port() if admin else None)
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
