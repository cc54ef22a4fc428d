"""Issue 13, data path, through real Envoy: the simulator's admin API is not reachable through the
gateway (item 2), one request-size limit at every hop with a 413 beyond it (item 6), and a
FailClose pool answers as upstream's Envoy-based gateways do when its EPP is dead (500) or hung
(504) (item 13).

Envoy is configured by the Dataplane; the EPP is the real ``infergate epp`` (static pool file)
and the pods are ``infergate.sim`` replicas, except for the failure-mode test, which needs an
EPP that accepts a stream and never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from infergate.api.limits import EXT_PROC_MAX_MESSAGE_BYTES, MAX_REQUEST_BODY_BYTES
from infergate.dataplane import Dataplane, DataplaneOptions
from infergate.dataplane.xds_translator import TranslateOptions
from infergate.ir import Endpoint, HeaderMatch, RouteMatch
from infergate.sim.cluster import SimCluster
from infergate.sim.config import SimConfig
from infergate.util.net import free_port, random_loopback_block

from .epp_subprocess import running_epp
from .gateway_config import GA, epp_static, gateway, ir_pool, sim_pool
from .support import EchoServers, post_reading_early_response, running

pytestmark = pytest.mark.e2e

MODEL = "m"
MIB = 1024 * 1024


@contextlib.asynccontextmanager
async def sims_and_epp(tmp_path: Path) -> AsyncIterator[tuple[SimCluster, int, int]]:
    """Two simulator replicas (admin API off, as by default) and ``infergate epp`` for them;
    yields (sims, EPP gRPC port, EPP metrics port)."""
    port = free_port()
    sims = SimCluster(SimConfig(model=MODEL, time_scale=200.0, mean_output_tokens=2),
                      random_loopback_block(2, port), port)
    async with sims, running_epp(epp_static(sims), tmp_path / "p.yaml", pool_name="p", pool_group=GA,
                                 refresh="200ms") as ports:
        yield sims, ports.grpc, ports.metrics


async def scheduled(metrics_port: int) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("inference_model_request_total{"))


async def test_admin_paths_sent_to_the_gateway_reach_no_admin_handler(tmp_path: Path, dataplane: Dataplane) -> None:
    listener_port = free_port()
    async with sims_and_epp(tmp_path) as (sims, epp_port, _):
        pool = sim_pool(sims, epp_port)
        await dataplane.apply(gateway(listener_port, [("/", pool)], [pool]))  # PathPrefix "/": everything
        body: dict[str, Any] = {"model": MODEL, "prompt": "hello", "stalled": True, "error_rate": 1.0}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listener_port}", timeout=10) as client:
            answers = [await client.post(path, json=body)
                       for path in ["/admin/crash"] * 3 + ["/admin/faults", "/admin/restart",
                                                           "/admin/replicas/0/crash"]]
            await asyncio.sleep(0.3)  # the old per-replica crash acted a moment after answering
            served = await client.post("/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": 2})
        assert [a.status_code for a in answers] == [404] * 6, [(a.status_code, a.text) for a in answers]
        assert all(a.headers.get("x-inference-pod") for a in answers)  # scheduled to a replica: its 404
        for replica in sims.replicas:
            assert (replica.ready, replica.state, replica.restarts) == (True, "ready", 0), replica.describe()
            assert replica.faults.error_rate == 0 and not replica.faults.stalled
        assert served.status_code == 200


def padded(size: int) -> bytes:
    """A valid completion request of exactly ``size`` bytes (the bulk in the ``user`` field)."""
    head = b'{"model": "' + MODEL.encode() + b'", "prompt": "hi", "max_tokens": 1, "user": "'
    tail = b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def test_one_request_size_limit_at_every_hop(tmp_path: Path, dataplane: Dataplane) -> None:
    listener_port = free_port()
    async with sims_and_epp(tmp_path) as (sims, epp_port, metrics_port):
        closed, opened = sim_pool(sims, epp_port), sim_pool(sims, epp_port, "open", "FailOpen")
        to_open = RouteMatch(headers=(HeaderMatch("x-pool", "open"),))
        await dataplane.apply(gateway(listener_port, [(to_open, opened), ("/", closed)], [closed, opened]))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listener_port}", timeout=30) as client:
            for pool in ("closed", "open"):
                headers = {"content-type": "application/json", "x-pool": pool}
                before = await scheduled(metrics_port)
                fits = await client.post("/v1/completions", content=padded(int(3.9 * MIB)), headers=headers)
                assert fits.status_code == 200, fits.text
                assert fits.headers["x-inference-pod"] in {r.name for r in sims.replicas}
                assert await scheduled(metrics_port) == before + 1, "the EPP scheduled the 3.9 MiB request"
                exact = await client.post("/v1/completions", content=padded(MAX_REQUEST_BODY_BYTES),
                                          headers=headers)
                assert exact.status_code == 200, exact.text
                for size in (int(4.2 * MIB), 5 * MIB, 8 * MIB + 1):
                    status, fields = await post_reading_early_response(
                        listener_port, "/v1/completions", padded(size), headers
                    )
                    assert status == 413, (pool, size, status, fields)
                    assert "x-inference-pod" not in fields
                assert await scheduled(metrics_port) == before + 2
    assert EXT_PROC_MAX_MESSAGE_BYTES > MAX_REQUEST_BODY_BYTES == 4 * MIB
    assert dataplane.options.translate.max_request_bytes == MAX_REQUEST_BODY_BYTES


class HungEpp(pb_grpc.ExternalProcessorServicer):
    """Accepts every ext_proc stream and never answers."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: grpc.aio.Server | None = None

    async def Process(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        async for _ in request_iterator:
            pass
        await asyncio.Event().wait()
        yield  # pragma: no cover (an async generator that yields nothing)

    async def start(self) -> None:
        server = grpc.aio.server()
        pb_grpc.add_ExternalProcessorServicer_to_server(self, server)
        server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)


async def test_fail_close_answers_500_for_a_dead_epp_and_504_for_a_hung_one(tmp_path: Path, envoy_bin: str) -> None:
    pods, hung = EchoServers(1), HungEpp()
    listener_port = free_port()
    options = DataplaneOptions(work_dir=tmp_path / "envoy", envoy_bin=envoy_bin,
                               translate=TranslateOptions(ext_proc_message_timeout_s=1.0))
    async with Dataplane(options) as dataplane, running(pods):
        await hung.start()
        try:
            dead = ir_pool("dead", pods.endpoints, pods.port, (Endpoint("127.0.0.1", free_port()),))
            slow = ir_pool("hung", pods.endpoints, pods.port, (Endpoint("127.0.0.1", hung.port),))
            await dataplane.apply(gateway(listener_port, [("/dead", dead), ("/hung", slow)], [dead, slow]))
            body = {"model": MODEL, "prompt": "hi"}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listener_port}", timeout=10) as client:
                dead_answers = [await client.post("/dead/v1/completions", json=body) for _ in range(3)]
                hung_answer = await client.post("/hung/v1/completions", json=body)
        finally:
            await hung.stop()
    assert [a.status_code for a in dead_answers] == [500] * 3
    assert hung_answer.status_code == 504
    # an OpenAI-style JSON error, not Envoy's empty body (issue 17)
    for answer in (*dead_answers, hung_answer):
        assert answer.headers["content-type"] == "application/json", answer.headers
        error = answer.json()["error"]
        assert error["type"] == "endpoint_picker_unavailable" and error["code"] == answer.status_code, error
        assert "FailClose" in error["message"] and error["details"].startswith("ext_proc_error"), error
