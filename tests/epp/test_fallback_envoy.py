"""Fallback endpoints through real Envoy (EPP protocol, "Destination Endpoint"): the EPP answers
``x-gateway-destination-endpoint: <dead>,<live>``; Envoy's retry goes down the list in order, so
the request is served by the listed fallback, not by any other pod of the pool."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from infergate.bench.topology import EnvoyProcess, Lane, PortPool
from infergate.epp.contract import Decision, InferenceRequest
from infergate.epp.extproc import ExtProcServer
from infergate.sim import SimCluster, SimConfig
from infergate.util.net import random_loopback_block

pytestmark = [pytest.mark.e2e]
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


class ListedDirector:
    """An EPP that always answers the same ordered endpoint list (the protocol's fallbacks)."""

    def __init__(self, endpoint: str, fallbacks: list[str]) -> None:
        self.endpoint = endpoint
        self.fallbacks = fallbacks

    async def handle_request(self, request: InferenceRequest) -> Decision:
        return Decision(self.endpoint, list(self.fallbacks))

    def on_response_headers(self, request_id: str, status: int, headers: Mapping[str, str]) -> None:
        pass

    def on_response_body(self, request_id: str, chunk: bytes, end_of_stream: bool) -> None:
        pass

    def on_request_done(self, request_id: str, *, completed: bool) -> None:
        pass


async def test_envoy_retries_the_next_listed_endpoint_when_the_first_refuses(tmp_path: Path, envoy_bin: str) -> None:
    ports = PortPool()
    sim_port = ports()
    dead, live, other = random_loopback_block(3, sim_port)
    sims = SimCluster(SimConfig(model=MODEL, time_scale=50.0, mean_output_tokens=0), [live, other], sim_port)
    await sims.start()
    dead_ep, live_ep, other_ep = (f"{a}:{sim_port}" for a in (dead, live, other))
    server = ExtProcServer(ListedDirector(dead_ep, [live_ep]), host="127.0.0.1", port=ports())
    await server.start()
    lane = Lane("main", ports(), server.port, (dead_ep, other_ep, live_ep), debug_headers=True)
    envoy = EnvoyProcess([lane], workdir=tmp_path, envoy_bin=envoy_bin, ports=ports)
    try:
        await envoy.start()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{lane.listen_port}", timeout=30) as client:
            for _ in range(5):
                response = await client.post("/v1/completions", json={"model": MODEL, "prompt": "hi",
                                                                       "max_tokens": 2})
                assert response.status_code == 200, response.text
                assert response.headers.get("x-epp-destination") == f"{dead_ep},{live_ep}"
                assert response.headers.get("x-upstream-host") == live_ep  # the listed fallback, every time
    finally:
        await envoy.stop()
        await server.stop()
        await sims.stop()
