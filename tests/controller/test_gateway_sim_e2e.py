"""End to end with every real piece: `infergate gateway -f DIR` (controller + xDS + Envoy),
`infergate epp` processes (one per pool), simulator replicas, the official openai client.

Topology: llama pods (2 simulator replicas) serve two pools on the same pods, a preview
(v1alpha2) pool and a GA (v1) pool, split by weight in one rule; qwen pods (2 replicas) serve
a v1alpha2 pool. Body-based routing puts the body's model into X-Gateway-Model-Name, the
HTTPRoute matches it. A second route points at a pool that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio
import yaml

from infergate.bench.topology import EPPProcess, ManagedProcess, PortPool, python_argv, static_pool_file
from infergate.sim import SimCluster, SimConfig
from infergate.util.net import random_loopback_block
from infergate.util.wait import WaitTimeout, async_wait_until

from ..sim.support import stream_completion

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("gateway-sim-e2e")]
LOOP = pytest.mark.asyncio(loop_scope="module")
LLAMA, QWEN = "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct"
V1, X = "inference.networking.k8s.io", "inference.networking.x-k8s.io"


@dataclass
class Topology:
    base_url: str
    admin_url: str
    llama: SimCluster
    qwen: SimCluster
    epps: dict[str, EPPProcess]  # pool name -> its EPP
    manifest: Path
    docs: list[dict[str, Any]]
    gateway: ManagedProcess


def pods(prefix: str, app: str, cluster: SimCluster) -> list[dict[str, Any]]:
    return [{"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": f"{prefix}-{i}", "namespace": "default", "labels": {"app": app}},
             "status": {"podIP": r.host, "conditions": [{"type": "Ready", "status": "True"}]}}
            for i, r in enumerate(cluster.replicas)]


def epp_service(name: str, epp: EPPProcess) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": "127.0.0.1", "ports": [{"name": "grpc", "port": epp.grpc_port}]}}


def llama_rule(preview_weight: int, ga_weight: int) -> dict[str, Any]:
    return {"matches": [{"headers": [{"name": "X-Gateway-Model-Name", "value": LLAMA}]}],
            "backendRefs": [
                {"group": X, "kind": "InferencePool", "name": "llama-preview", "weight": preview_weight},
                {"group": V1, "kind": "InferencePool", "name": "llama", "weight": ga_weight}]}


def write(path: Path, docs: list[dict[str, Any]]) -> None:
    tmp = path.with_name(".tmp-" + path.name)
    tmp.write_text(yaml.safe_dump_all(docs))
    os.replace(tmp, path)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def topology(tmp_path_factory: pytest.TempPathFactory, envoy_bin: str) -> AsyncIterator[Topology]:
    work: Path = tmp_path_factory.mktemp("gateway-sim")
    port = PortPool()
    sim_port = port()
    llama = SimCluster(SimConfig(model=LLAMA, time_scale=100.0, mean_output_tokens=0, pod_name="llama"),
                       random_loopback_block(2, sim_port), sim_port)
    qwen = SimCluster(SimConfig(model=QWEN, time_scale=100.0, mean_output_tokens=0, pod_name="qwen"),
                      random_loopback_block(2, sim_port), sim_port)
    epps = {
        name: EPPProcess(pool_file=static_pool_file(work / f"{name}.yaml", pool_name="pool", endpoints=c.endpoints),
                         workdir=work, name=f"epp-{name}", ports=port)
        for name, c in (("llama-preview", llama), ("llama", llama), ("qwen", qwen))
    }
    listen, admin = port(), port()
    _, a, b, _ = random_loopback_block(1, listen)[0].split(".")
    manifests = work / "manifests"
    manifests.mkdir()
    docs: list[dict[str, Any]] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "infergate"},
         "spec": {"controllerName": "infergate.io/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "inference-gateway", "namespace": "default"},
         "spec": {"gatewayClassName": "infergate", "listeners": [{"name": "http", "port": listen, "protocol": "HTTP"}]}},
        {"apiVersion": f"{X}/v1alpha2", "kind": "InferencePool", "metadata": {"name": "llama-preview", "namespace": "default"},
         "spec": {"selector": {"app": "llama"}, "targetPortNumber": sim_port,
                  "extensionRef": {"name": "epp-llama-preview", "portNumber": epps["llama-preview"].grpc_port}}},
        {"apiVersion": f"{V1}/v1", "kind": "InferencePool", "metadata": {"name": "llama", "namespace": "default"},
         "spec": {"selector": {"matchLabels": {"app": "llama"}}, "targetPorts": [{"number": sim_port}],
                  "endpointPickerRef": {"name": "epp-llama", "port": {"number": epps["llama"].grpc_port}}}},
        {"apiVersion": f"{X}/v1alpha2", "kind": "InferencePool", "metadata": {"name": "qwen", "namespace": "default"},
         "spec": {"selector": {"app": "qwen"}, "targetPortNumber": sim_port,
                  "extensionRef": {"name": "epp-qwen", "portNumber": epps["qwen"].grpc_port}}},
        *(epp_service(f"epp-{name}", epp) for name, epp in epps.items()),
        *pods("llama", "llama", llama), *pods("qwen", "qwen", qwen),
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "models", "namespace": "default"},
         "spec": {"parentRefs": [{"name": "inference-gateway"}], "rules": [
             llama_rule(50, 50),
             {"matches": [{"headers": [{"name": "X-Gateway-Model-Name", "value": QWEN}]}],
              "backendRefs": [{"group": X, "kind": "InferencePool", "name": "qwen"}]}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "to-missing-pool", "namespace": "default"},
         "spec": {"parentRefs": [{"name": "inference-gateway"}], "rules": [
             {"matches": [{"path": {"type": "PathPrefix", "value": "/missing"}}],
              "backendRefs": [{"group": V1, "kind": "InferencePool", "name": "does-not-exist"}]}]}},
    ]
    write(manifests / "gateway.yaml", docs)
    gateway = ManagedProcess(python_argv("gateway", "-f", str(manifests), "--address-pool", f"127.{a}.{b}.0/24",
                                         "--admin-port", str(admin), "--poll-interval", "0.2",
                                         "--work-dir", str(work / "envoy"), "-v"),
                             name="gateway", log_path=work / "gateway.log")
    started: list[Any] = []
    try:
        for thing in (llama, qwen, *epps.values(), gateway):
            await thing.start()
            started.append(thing)
        admin_url = f"http://127.0.0.1:{admin}"
        async with httpx.AsyncClient(timeout=5) as client:

            def not_ready() -> RuntimeError:
                return RuntimeError("gateway not ready:\n" + (work / "gateway.log").read_text()[-3000:])

            async def ready() -> bool:
                if not gateway.running:
                    raise not_ready()
                with contextlib.suppress(httpx.HTTPError):
                    return (await client.get(f"{admin_url}/readyz")).status_code == 200
                return False

            try:
                await async_wait_until(ready, 40, interval=0.2, what="the gateway to be ready")
            except WaitTimeout:
                raise not_ready() from None
            address = (await client.get(f"{admin_url}/ir")).json()["listeners"][0]["address"]
        await asyncio.sleep(0.3)  # a few metric scrapes by the EPPs
        yield Topology(f"http://{address}:{listen}", admin_url, llama, qwen, epps, manifests / "gateway.yaml",
                       docs, gateway)
    finally:
        for thing in reversed(started):
            await thing.stop()


async def epp_requests(epp: EPPProcess) -> float:
    """Requests this EPP scheduled (sum of inference_model_request_total)."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{epp.metrics_port}/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("inference_model_request_total{"))


@LOOP
async def test_model_name_routing_across_two_pools(topology: Topology) -> None:
    client = openai.AsyncOpenAI(base_url=topology.base_url + "/v1", api_key="none", max_retries=0)
    llama_pods = {r.name for r in topology.llama.replicas}
    qwen_pods = {r.name for r in topology.qwen.replicas}
    before = await epp_requests(topology.epps["qwen"])
    try:
        for i in range(12):
            model = QWEN if i % 2 else LLAMA
            raw = await client.completions.with_raw_response.create(model=model, prompt=f"hello {i}", max_tokens=2)
            pod = raw.headers["x-inference-pod"]
            assert pod in (qwen_pods if model == QWEN else llama_pods), (model, pod)
            assert raw.parse().model == model
        chat = await client.chat.completions.with_raw_response.create(
            model=QWEN, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        assert chat.headers["x-inference-pod"] in qwen_pods
    finally:
        await client.close()
    assert await epp_requests(topology.epps["qwen"]) - before == 7  # the qwen pool's own EPP picked them


@LOOP
async def test_route_to_a_missing_pool_answers_500_and_reports_backend_not_found(topology: Topology) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(topology.base_url + "/missing/v1/completions", json={"model": "x", "prompt": "y"})
        assert r.status_code == 500
        statuses = (await client.get(topology.admin_url + "/statuses")).json()
    (parent,) = statuses["HTTPRoute.gateway.networking.k8s.io default/to-missing-pool"]["parents"]
    assert {c["type"]: (c["status"], c["reason"]) for c in parent["conditions"]} == {
        "Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "BackendNotFound")}


@LOOP
async def test_fifty_fifty_split_between_a_preview_and_a_ga_pool_over_1000_requests(topology: Topology) -> None:
    preview, ga = topology.epps["llama-preview"], topology.epps["llama"]
    start_preview, start_ga = await epp_requests(preview), await epp_requests(ga)
    total, concurrency = 1000, 16
    failures: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=topology.base_url, timeout=30, limits=limits) as client:
        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                r = await client.post("/v1/completions", json={"model": LLAMA, "prompt": f"p{i}", "max_tokens": 1})
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 170)
    assert not failures, failures[:5]
    n_preview = await epp_requests(preview) - start_preview
    n_ga = await epp_requests(ga) - start_ga
    # Every request was scheduled by exactly one EPP: the one of the pool Envoy chose.
    assert n_preview + n_ga == total
    assert 0.45 <= n_preview / total <= 0.55, (n_preview, n_ga)
    assert 0.45 <= n_ga / total <= 0.55, (n_preview, n_ga)


@LOOP
async def test_weights_shift_from_50_50_to_0_100_under_streaming_load_without_failures(topology: Topology) -> None:
    preview, ga = topology.epps["llama-preview"], topology.epps["llama"]
    results: list[int] = []
    stop = asyncio.Event()
    async with httpx.AsyncClient(timeout=30) as client:
        async def streamer() -> None:
            while not stop.is_set():
                res = await stream_completion(client, topology.base_url,
                                              {"model": LLAMA, "prompt": "stream", "max_tokens": 16})
                results.append(res.status if res.done else -1)

        workers = [asyncio.create_task(streamer()) for _ in range(6)]
        try:
            await asyncio.sleep(1.0)
            route = next(d for d in topology.docs if d["metadata"].get("name") == "models")
            route["spec"]["rules"][0] = llama_rule(0, 100)
            write(topology.manifest, topology.docs)
            written = time.monotonic()
            # Wait until the gateway applied the new weights (its admin IR shows them once Envoy ACKed).
            weights: list[Any] = []

            async def applied() -> bool:
                nonlocal weights
                ir = (await client.get(topology.admin_url + "/ir")).json()
                weights = [b.get("weight") for vh in ir["listeners"][0]["virtual_hosts"] for r in vh["routes"]
                           for b in r.get("backends", []) if "llama" in b.get("target", "")]
                return weights == [0, 100]

            try:
                await async_wait_until(applied, 10, interval=0.1, what="the new weights")
            except WaitTimeout:
                pytest.fail(f"new weights not applied: {weights}")
            # manifest poll (0.2 s here) + debounce + translation + xDS ACK, on a loaded machine
            assert time.monotonic() - written < 3.0
            await asyncio.sleep(0.5)  # requests in flight at the switch finish on the old config
            after_switch = await epp_requests(preview)
            served_before = len(results)
            await asyncio.sleep(2.0)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*workers), 30)
    assert len(results) > served_before > 10
    assert all(status == 200 for status in results), [s for s in results if s != 200][:5]
    assert await epp_requests(preview) == after_switch  # no new request went to the preview pool
    assert await epp_requests(ga) > 0


@LOOP
async def test_epp_down_fail_close_then_fail_open_after_a_manifest_change(topology: Topology) -> None:
    """Runs last: it stops the qwen pool's EPP. FailClose (the default) answers 5xx; switching
    the pool to FailOpen in the manifest serves requests inside the pool without the EPP."""
    await topology.epps["qwen"].stop()
    qwen_pods = {r.name for r in topology.qwen.replicas}
    body = {"model": QWEN, "prompt": "hi", "max_tokens": 2}
    async with httpx.AsyncClient(base_url=topology.base_url, timeout=15) as client:
        statuses = [(await client.post("/v1/completions", json=body)).status_code for _ in range(4)]
        assert all(500 <= s < 600 for s in statuses), statuses
        pool = next(d for d in topology.docs if d["metadata"].get("name") == "qwen" and d["kind"] == "InferencePool")
        pool["spec"]["extensionRef"]["failureMode"] = "FailOpen"
        write(topology.manifest, topology.docs)
        statuses = []

        async def served() -> bool:
            statuses.append((await client.post("/v1/completions", json=body)).status_code)
            return statuses[-1] == 200

        try:
            await async_wait_until(served, 10, interval=0.1, what="fail-open")
        except WaitTimeout:
            pytest.fail(f"fail-open not effective within 10 s: {statuses[-1]}")
        for _ in range(6):
            r = await client.post("/v1/completions", json=body)
            assert r.status_code == 200 and r.headers["x-inference-pod"] in qwen_pods
