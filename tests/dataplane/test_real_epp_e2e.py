"""The whole request path with the real components: official ``openai`` client -> Envoy
(configured by the Dataplane) -> ``infergate epp`` processes (one per pool, static source)
-> ``infergate.sim`` replicas.

A weighted split between a preview (v1alpha2) pool and a GA (v1) pool: every request must
be scheduled by its own pool's EPP. The pools have separate pods, so the pod that served a
request (``x-inference-pod``) tells which pool's cluster Envoy used, and each EPP's request
counter (``inference_model_request_total``) tells how many requests it scheduled; the two
must agree exactly, request for request.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from infergate.dataplane import Dataplane
from infergate.ir import (
    Backend,
    DataplaneConfig,
    Endpoint,
    EndpointPicker,
    Listener,
    Pool,
    Route,
    RouteMatch,
    VirtualHost,
)
from infergate.sim.cluster import SimCluster
from infergate.sim.config import SimConfig
from infergate.util.net import free_port, random_loopback_block

from .epp_subprocess import running_epp

pytestmark = pytest.mark.e2e

MODEL = "food-review"
GA = "inference.networking.k8s.io"
PREVIEW = "inference.networking.x-k8s.io"


@contextlib.asynccontextmanager
async def epp_process(
    tmp_path: Path, name: str, group: str, sims: SimCluster
) -> AsyncIterator[tuple[int, int]]:
    """Run ``infergate epp`` for one pool; yields (ext_proc port, metrics port)."""
    static = {
        "pool": {"name": name, "namespace": "default", "group": group, "targetPorts": [sims.port]},
        "endpoints": [
            {"name": r.name, "address": r.host, "port": sims.port, "ready": True} for r in sims.replicas
        ],
        "models": [{"name": MODEL, "modelName": MODEL, "criticality": "Critical"}]
        if group == PREVIEW
        else [],
    }
    async with running_epp(static, tmp_path / f"{name}.yaml", pool_name=name, pool_group=group,
                           refresh="200ms") as ports:
        yield ports.grpc, ports.metrics


async def scheduled_requests(metrics_port: int) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("inference_model_request_total{")
    )


def ir_pool(key: str, group: str, name: str, sims: SimCluster, epp_port: int) -> Pool:
    return Pool(
        key=key,
        group=group,
        namespace="default",
        name=name,
        target_ports=(sims.port,),
        endpoints=tuple(Endpoint(r.host, sims.port) for r in sims.replicas),
        picker=EndpointPicker(
            f"epp/default/{name}-epp/{epp_port}", (Endpoint("127.0.0.1", epp_port),), "FailClose"
        ),
    )


async def test_split_between_preview_and_ga_pools_each_request_scheduled_by_its_own_epp(
    tmp_path: Path, dataplane: Dataplane
) -> None:
    sim_port = free_port()
    preview_addresses = random_loopback_block(2, sim_port)
    ga_addresses = random_loopback_block(2, sim_port)
    config = dict(model=MODEL, time_scale=200.0, mean_output_tokens=4)
    preview_sims = SimCluster(SimConfig(**config, pod_name="preview"), preview_addresses, sim_port)  # type: ignore[arg-type]
    ga_sims = SimCluster(SimConfig(**config, pod_name="ga"), ga_addresses, sim_port)  # type: ignore[arg-type]
    listener_port = free_port()
    total = 300
    async with (
        preview_sims,
        ga_sims,
        epp_process(tmp_path, "vllm-preview", PREVIEW, preview_sims) as (preview_grpc, preview_metrics),
        epp_process(tmp_path, "vllm-ga", GA, ga_sims) as (ga_grpc, ga_metrics),
    ):
        pools = (
            ir_pool(
                f"pool/{PREVIEW}/default/vllm-preview", PREVIEW, "vllm-preview", preview_sims, preview_grpc
            ),
            ir_pool(f"pool/{GA}/default/vllm-ga", GA, "vllm-ga", ga_sims, ga_grpc),
        )
        route = Route(
            "httproute/default/llm-route/rule/0/match/0",
            RouteMatch(),
            (Backend("pool", 50, pools[0].key), Backend("pool", 50, pools[1].key)),
        )
        listener = Listener(
            "gateway/default/inference-gateway/http", "default", "inference-gateway", "127.0.0.1", listener_port,
            (VirtualHost("vh", ("*",), (route,)),),
        )  # fmt: skip
        await dataplane.apply(DataplaneConfig(listeners=(listener,), pools=pools))

        client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{listener_port}/v1", api_key="unused", max_retries=0
        )
        semaphore = asyncio.Semaphore(6)

        async def one(index: int) -> str:
            async with semaphore:
                raw = await client.completions.with_raw_response.create(
                    model=MODEL, prompt=f"Write as if you were a critic: San Francisco #{index}", max_tokens=4
                )
                completion = raw.parse()
                assert completion.choices and completion.model == MODEL
                return raw.headers["x-inference-pod"]

        pods = await asyncio.gather(*(one(i) for i in range(total)))
        await client.close()
        scheduled_preview = await scheduled_requests(preview_metrics)
        scheduled_ga = await scheduled_requests(ga_metrics)

    by_pool = Counter(pod.split("-")[0] for pod in pods)
    assert set(by_pool) == {"preview", "ga"}, by_pool
    assert by_pool["preview"] + by_pool["ga"] == total
    # Request for request: each EPP scheduled exactly the requests its pool served.
    assert (scheduled_preview, scheduled_ga) == (by_pool["preview"], by_pool["ga"])
    share = by_pool["preview"] / total
    assert abs(share - 0.5) <= max(0.10, 3 * math.sqrt(0.25 / total)), by_pool
