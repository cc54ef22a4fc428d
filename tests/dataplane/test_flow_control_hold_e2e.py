"""Flow control through real Envoy: a request the EPP holds longer than the filter's
``message_timeout`` is served, not answered 504 by Envoy.

Official ``openai`` client -> Envoy (configured by the Dataplane, ext_proc ``message_timeout``
1 s) -> ``infergate epp`` with its defaults (flow control on: the default profile accounts its
picks) and at most one request in flight per endpoint -> one simulated replica. Request A streams for ~2.5 s; request B, sent while A runs, waits in the
EPP's flow-control queue until A ends. Before the EPP told Envoy to wait for a held request
(``override_message_timeout``), Envoy answered B with 504 after 1 s.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import openai
import pytest

from infergate.dataplane import Dataplane, DataplaneOptions
from infergate.dataplane.xds_translator.options import TranslateOptions
from infergate.sim.cluster import SimCluster
from infergate.sim.config import SimConfig
from infergate.util.net import free_port, random_loopback_block

from .epp_subprocess import running_epp
from .gateway_config import GA, epp_static, gateway, sim_pool

pytestmark = pytest.mark.e2e

MODEL = "food-review"
MESSAGE_TIMEOUT_S = 1.0


async def test_a_request_held_by_flow_control_longer_than_the_message_timeout_is_served(
        tmp_path: Path, envoy_bin: str) -> None:
    sim_port = free_port()
    # ~25 ms per decode step: 100 tokens stream for ~2.5 s
    sims = SimCluster(SimConfig(model=MODEL, mean_output_tokens=0, profile_overrides={"step_base_s": 0.025},
                                pod_name="only"), random_loopback_block(1, sim_port), sim_port)
    options = DataplaneOptions(work_dir=tmp_path / "envoy", envoy_bin=envoy_bin,
                               translate=TranslateOptions(ext_proc_message_timeout_s=MESSAGE_TIMEOUT_S))
    listener_port = free_port()
    async with (
        sims,
        running_epp(epp_static(sims, "vllm"), tmp_path / "pool.yaml", pool_name="vllm", pool_group=GA, extra_args=(
            "--sd-max-inflight-per-endpoint", "1")) as epp,
        Dataplane(options) as dataplane,
    ):
        pool = sim_pool(sims, epp.grpc, "vllm")
        await dataplane.apply(gateway(listener_port, [("/", pool)], [pool]))
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{listener_port}/v1", api_key="unused",
                                    max_retries=0, timeout=30)
        started = time.monotonic()
        first = await client.completions.create(model=MODEL, prompt="A, the long one", max_tokens=100, stream=True)
        first_chunk = await anext(aiter(first))  # A is being served: the endpoint's one slot is taken
        assert first_chunk.choices

        async def rest_of_a() -> int:
            return 1 + sum([1 async for _ in first])

        a_rest = asyncio.create_task(rest_of_a())
        b = await client.completions.create(model=MODEL, prompt="B, held behind A", max_tokens=4)
        b_done = time.monotonic()
        a_chunks = await a_rest
        a_done = time.monotonic()
        await client.close()

    assert b.choices and b.choices[0].text
    assert a_chunks >= 50
    # B really waited behind A, longer than Envoy's per-message timeout
    assert b_done - started > MESSAGE_TIMEOUT_S + 0.5, (b_done - started)
    assert b_done >= a_done - 0.5
