"""Fixtures for the local runtime: an embedded API server and a runtime on a private pod network."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from infergate.apiserver import EmbeddedAPIServer
from infergate.apiserver.runtime import KubeClient, LocalRuntime, RestartPolicy, RuntimeOptions
from infergate.util.net import random_loopback_block

Cluster = tuple[EmbeddedAPIServer, LocalRuntime, KubeClient]


def private_pod_cidr(port: int = 8000) -> str:
    """A /24 inside 127.0.0.0/8 where ``port`` is free on the first addresses (tests run concurrently)."""
    first = random_loopback_block(8, port, rng=random.Random())[0]
    return first.rsplit(".", 1)[0] + ".0/24"


@contextlib.asynccontextmanager
async def running_cluster(base: Path, *, authorization_mode: str = "AlwaysAllow",
                          service_account_tokens: bool = False) -> AsyncIterator[Cluster]:
    """An embedded API server and a local runtime (pods/log wired) under ``base``; stopped at exit."""
    api = EmbeddedAPIServer(base / "api", authorization_mode=authorization_mode)
    await api.start()
    options = RuntimeOptions(kubeconfig=api.kubeconfig_path, state_dir=base / "runtime", pod_cidr=private_pod_cidr(),
                             restart=RestartPolicy(initial_s=0.2, max_s=2.0, reset_after_s=5.0), resync_s=1.0,
                             service_account_tokens=service_account_tokens)
    runtime = LocalRuntime(options)
    client = KubeClient.from_kubeconfig(api.kubeconfig_path)
    try:
        await runtime.start()
        assert api.server is not None
        api.server.add_subresource_handler("", "pods", "log", runtime.log_server())
        await client.open()
        yield api, runtime, client
    finally:
        await client.close()
        await runtime.stop()
        await api.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def cluster(tmp_path_factory: object) -> AsyncIterator[Cluster]:
    async with running_cluster(Path(tmp_path_factory.mktemp("runtime"))) as handles:  # type: ignore[attr-defined]
        yield handles
