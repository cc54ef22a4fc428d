"""A converted v1.0 installation keeps priorities and weighted target models, end to end.

Preview manifests (a v1alpha2 InferencePool, InferenceModels with criticality and a 90/10
``targetModels`` canary, an HTTPRoute to the preview pool) -> ``infergate convert`` (library,
default options) -> the controller's translator -> real Envoy -> the real ``infergate epp``
of the GA pool (its InferenceObjectives are the converted ones) -> simulator replicas.

The priority and the target model reach the EPP only through HTTPRoute filters: the rule's
``RequestHeaderModifier`` sets ``x-gateway-inference-objective``, each of the two backendRefs
of the canary sets ``x-gateway-model-name-rewrite``. The EPP runs saturated
(``SD_QUEUE_DEPTH_THRESHOLD=-1``: no pod is ever under the queue threshold), so it sheds
every request whose objective has a negative priority and, with upstream v1.0's admission
(``--no-flow-control``), serves the others at once: a Sheddable
model answers 429 while a Critical one is served, which only happens when the EPP sees the
header set by the route.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from infergate.api.conversion import convert_objects
from infergate.api.conversion.manifests import ConvertOptions
from infergate.controller.snapshot import Snapshot
from infergate.controller.translator import TranslatorOptions, translate
from infergate.controller.translator.addresses import LoopbackAllocator
from infergate.dataplane import Dataplane
from infergate.sim.cluster import SimCluster
from infergate.sim.config import SimConfig
from infergate.util.net import free_port, random_loopback_block

from .epp_subprocess import running_epp

pytestmark = pytest.mark.e2e

X = "inference.networking.x-k8s.io"
GW = "gateway.networking.k8s.io"
PREVIEW_POOL, GA_POOL = "vllm-preview", "vllm-ga"


def preview_installation(sim_port: int) -> list[dict[str, Any]]:
    def model(name: str, criticality: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": f"{X}/v1alpha2", "kind": "InferenceModel",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"modelName": name, "criticality": criticality, "poolRef": {"name": PREVIEW_POOL}, **spec}}

    return [
        {"apiVersion": f"{X}/v1alpha2", "kind": "InferencePool",
         "metadata": {"name": PREVIEW_POOL, "namespace": "default"},
         "spec": {"selector": {"app": "vllm"}, "targetPortNumber": sim_port,
                  "extensionRef": {"name": "vllm-preview-epp"}}},
        model("food-review", "Critical",
              targetModels=[{"name": "food-review-1", "weight": 90}, {"name": "food-review-2", "weight": 10}]),
        model("batch", "Sheddable"),
        {"apiVersion": f"{GW}/v1", "kind": "HTTPRoute", "metadata": {"name": "llm-route", "namespace": "default"},
         "spec": {"parentRefs": [{"name": "inference-gateway"}],
                  "rules": [{"backendRefs": [{"group": X, "kind": "InferencePool", "name": PREVIEW_POOL}]}]}},
    ]  # fmt: skip


@contextlib.asynccontextmanager
async def saturated_epp(tmp_path: Path, pool: dict[str, Any], objectives: list[dict[str, Any]],
                        sims: SimCluster) -> AsyncIterator[tuple[int, int]]:
    """``infergate epp`` for the converted GA pool, always saturated; yields (grpc, metrics) ports."""
    static = {
        "pool": pool,
        "objectives": objectives,
        "endpoints": [{"name": r.name, "address": r.host, "port": sims.port, "ready": True,
                       "labels": {"app": "vllm"}} for r in sims.replicas],
    }  # fmt: skip
    env = {"SD_QUEUE_DEPTH_THRESHOLD": "-1"}
    # upstream v1.0's admission (--no-flow-control): a saturated pool serves priority >= 0 at once; with
    # infergate's default flow control they would wait for room that never comes (tested elsewhere)
    async with running_epp(static, tmp_path / "epp.yaml", pool_name=GA_POOL,
                           pool_group="inference.networking.k8s.io", env=env,
                           extra_args=("--no-flow-control",)) as ports:
        yield ports.grpc, ports.metrics


async def request_counts(metrics_port: int) -> dict[tuple[str, str], float]:
    """inference_model_request_total by (model_name, target_model_name)."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    counts: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("inference_model_request_total{"):
            labels = dict(
                part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(",") if part
            )
            key = (labels["model_name"].strip('"'), labels["target_model_name"].strip('"'))
            counts[key] = float(line.rsplit(" ", 1)[1])
    return counts


async def test_converted_route_keeps_priority_and_weighted_target_models(
    tmp_path: Path, dataplane: Dataplane
) -> None:
    sim_port = free_port()
    sims = SimCluster(
        SimConfig(model="base", lora_adapters=("food-review-1", "food-review-2", "batch"), max_loras=3,
                  time_scale=200.0, mean_output_tokens=2, pod_name="vllm"),
        random_loopback_block(2, sim_port), sim_port,
    )  # fmt: skip
    results, warnings, problems = convert_objects(preview_installation(sim_port), ConvertOptions())
    assert not problems, problems
    converted = [obj for result in results for obj in result.objects]
    kinds = [o["kind"] for o in converted]
    assert "InferenceModelRewrite" not in kinds, "the default output is pure v1.0"
    pool = next(o for o in converted if o["kind"] == "InferencePool")
    objectives = [o for o in converted if o["kind"] == "InferenceObjective"]
    assert {o["metadata"]["name"]: o["spec"]["priority"] for o in objectives} == {"food-review": 2, "batch": -1}
    assert any(w.field == "spec.targetModels" for w in warnings)

    listen = free_port()
    gateway_address = random_loopback_block(1, listen)[0]
    total = 300
    async with sims, saturated_epp(tmp_path, pool, objectives, sims) as (epp_port, metrics_port):
        cluster = [
            {"apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "infergate"},
             "spec": {"controllerName": "infergate.io/gateway-controller"}},
            {"apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "inference-gateway", "namespace": "default"},
             "spec": {"gatewayClassName": "infergate", "listeners": [{"name": "http", "port": listen, "protocol": "HTTP"}]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "vllm-ga-epp", "namespace": "default"},
             "spec": {"clusterIP": "127.0.0.1", "ports": [{"port": epp_port}]}},
            *({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": r.name, "namespace": "default", "labels": {"app": "vllm"}},
               "status": {"podIP": r.host, "conditions": [{"type": "Ready", "status": "True"}]}} for r in sims.replicas),
        ]  # fmt: skip
        pool["spec"]["endpointPickerRef"]["port"]["number"] = epp_port  # the converter's 9002 -> where it listens
        translated = translate(
            Snapshot.of([*converted, *cluster]),
            TranslatorOptions(addresses=LoopbackAllocator(f"{gateway_address}/32")),
        )
        route_status = next(s for ref, s in translated.statuses.items() if ref.kind == "HTTPRoute")
        assert all(c["status"] == "True" for c in route_status["parents"][0]["conditions"]), route_status
        await dataplane.apply(translated.ir)

        client = openai.AsyncOpenAI(base_url=f"http://{gateway_address}:{listen}/v1", api_key="-", max_retries=0)
        semaphore = asyncio.Semaphore(6)

        async def food_review(index: int) -> tuple[str, str]:
            async with semaphore:
                raw = await client.completions.with_raw_response.create(
                    model="food-review", prompt=f"Review the dish #{index}", max_tokens=2
                )
                return raw.parse().model, raw.headers["x-inference-pod"]

        served = await asyncio.gather(*(food_review(i) for i in range(total)))
        shed: list[int] = []
        for index in range(20):
            try:
                await client.completions.create(model="batch", prompt=f"batch job {index}", max_tokens=2)
                shed.append(200)
            except openai.APIStatusError as exc:
                shed.append(exc.status_code)
        await client.close()
        counts = await request_counts(metrics_port)

    # Priority: the Critical model is served although the pool is saturated; the Sheddable one is shed.
    assert len(served) == total
    assert shed == [429] * 20, Counter(shed)
    # Target models: the simulator served the rewritten models, about 90/10, on both pods.
    models = Counter(model for model, _ in served)
    assert set(models) == {"food-review-1", "food-review-2"}, models
    share = models["food-review-2"] / total
    assert abs(share - 0.10) <= 3 * math.sqrt(0.09 / total) + 0.01, models
    assert {pod for _, pod in served} == {r.name for r in sims.replicas}
    # The EPP scheduled exactly these requests with these target models (its own accounting).
    assert counts[("food-review", "food-review-1")] == models["food-review-1"]
    assert counts[("food-review", "food-review-2")] == models["food-review-2"]
