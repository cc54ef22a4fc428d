"""The Envoy supervisor with the real binary: bootstrap, readiness, restart on crash, clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import httpx
import pytest
from httpx_sse import EventSource

from infergate.dataplane import Dataplane, DataplaneOptions
from infergate.dataplane.envoy import EnvoyOptions, bootstrap
from infergate.ir import (
    Backend,
    DataplaneConfig,
    EndpointPicker,
    Listener,
    Pool,
    Route,
    RouteMatch,
    VirtualHost,
)
from infergate.util.net import free_port
from infergate.util.procs import pid_alive
from infergate.util.wait import async_wait_until

from .support import EchoServers, running

pytestmark = pytest.mark.e2e


def test_bootstrap_keeps_admin_on_loopback_and_points_ads_at_our_server(tmp_path: Path) -> None:
    config = bootstrap(EnvoyOptions(work_dir=tmp_path, xds_address=("127.0.0.1", 18000)))
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    ads = config["dynamic_resources"]["ads_config"]["grpc_services"][0]["envoy_grpc"]["cluster_name"]
    (cluster,) = config["static_resources"]["clusters"]
    assert cluster["name"] == ads
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"
    ]
    assert (endpoint["address"], endpoint["port_value"]) == ("127.0.0.1", 18000)
    assert "http2_protocol_options" in json.dumps(cluster)


def one_pool_config(pods: EchoServers, port: int) -> DataplaneConfig:
    """One listener on ``port`` routing everything to a fail-open pool of ``pods`` whose EPP is
    absent: served by round robin, so these tests need no EPP."""
    pool = Pool("pool/a", "g", "default", "a", (pods.port,), pods.endpoints,
                EndpointPicker("epp/none", (), "FailOpen"))
    route = Route("r", RouteMatch(), (Backend("pool", 1, "pool/a"),))
    listener = Listener("gw/http", "default", "gw", "127.0.0.1", port, (VirtualHost("vh", ("*",), (route,)),))
    return DataplaneConfig(listeners=(listener,), pools=(pool,))


async def test_killed_envoy_is_restarted_and_gets_its_config_back(tmp_path: Path, envoy_bin: str) -> None:
    pods = EchoServers(1)
    port = free_port()
    ir = one_pool_config(pods, port)
    options = DataplaneOptions(
        work_dir=tmp_path / "envoy", envoy_bin=envoy_bin, drain_time_s=1, listener_drain_time_s=5
    )
    async with running(pods), Dataplane(options) as dataplane:
        admin_host, _ = dataplane.admin_address
        assert admin_host == "127.0.0.1"
        await dataplane.apply(ir)
        url = f"http://127.0.0.1:{port}/v1/completions"

        async def served() -> bool:
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    return (await client.post(url, json={"model": "m"})).status_code == 200
            except httpx.HTTPError:
                return False

        assert await served()
        first_pid = dataplane.envoy.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)

        async def restarted() -> bool:
            return dataplane.envoy.restarts == 1 and dataplane.envoy.pid not in (None, first_pid)

        await async_wait_until(restarted, 15, interval=0.1, what="Envoy to restart")
        await async_wait_until(served, 15, interval=0.1, what="the new Envoy to serve")  # same config over ADS
        assert dataplane.envoy.exits == [-signal.SIGKILL]
        second_pid = dataplane.envoy.pid
    assert second_pid is not None and not pid_alive(second_pid)  # stopped on exit


async def test_stop_drains_an_in_flight_stream_before_exiting(tmp_path: Path, envoy_bin: str) -> None:
    pods = EchoServers(1)
    port = free_port()
    ir = one_pool_config(pods, port)
    options = DataplaneOptions(
        work_dir=tmp_path / "envoy", envoy_bin=envoy_bin, drain_time_s=3, listener_drain_time_s=5
    )
    async with running(pods):
        dataplane = Dataplane(options)
        await dataplane.start()
        try:
            await dataplane.apply(ir)
            async with httpx.AsyncClient(timeout=10) as client:

                async def stream() -> list[str]:
                    body = {"model": "m", "chunks": 8, "chunk_delay": 0.1}
                    async with client.stream(
                        "POST", f"http://127.0.0.1:{port}/v1/completions", json=body
                    ) as r:
                        return [event.data async for event in EventSource(r).aiter_sse()]

                task = asyncio.create_task(stream())
                await asyncio.sleep(0.3)  # the stream is under way
                pid = dataplane.envoy.pid
                await dataplane.stop()
                lines = await task
        finally:
            await dataplane.stop()
    assert len(lines) == 9 and lines[-1] == "[DONE]"  # 8 chunks + [DONE], none cut
    assert pid is not None and not pid_alive(pid)
