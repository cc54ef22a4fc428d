"""End-to-end: the gateway (file provider -> translator -> real Envoy over xDS) routes real
HTTP requests, and writes the statuses upstream expects.

Model servers and EPPs are the data plane's test doubles (``EchoServers`` answers which
address served; ``StampingEpp`` stamps its name, so each response shows which pool's
picker routed it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from infergate.controller.translator.options import TranslationResult
from infergate.gateway import GatewayConfig, run_gateway
from infergate.util.net import free_port, random_loopback_block
from infergate.util.wait import WaitTimeout, async_wait_until

from ..dataplane.support import EchoServers, StampingEpp, running

pytestmark = pytest.mark.e2e


def pod(name: str, app: str, ip: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}}


def manifests(port: int, llama: EchoServers, qwen: EchoServers, llama_epp: StampingEpp,
              qwen_epp: StampingEpp) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "infergate"},
         "spec": {"controllerName": "infergate.io/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "inference-gateway", "namespace": "default"},
         "spec": {"gatewayClassName": "infergate", "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}},
        {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
         "metadata": {"name": "llama", "namespace": "default"},
         "spec": {"selector": {"matchLabels": {"app": "llama"}}, "targetPorts": [{"number": llama.port}],
                  "endpointPickerRef": {"name": "llama-epp", "port": {"number": llama_epp.port}}}},
        {"apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferencePool",
         "metadata": {"name": "qwen", "namespace": "default"},
         "spec": {"selector": {"app": "qwen"}, "targetPortNumber": qwen.port,
                  "extensionRef": {"name": "qwen-epp", "portNumber": qwen_epp.port}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "llama-epp", "namespace": "default"},
         "spec": {"clusterIP": "127.0.0.1", "ports": [{"port": llama_epp.port}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "qwen-epp", "namespace": "default"},
         "spec": {"clusterIP": "127.0.0.1", "ports": [{"port": qwen_epp.port}]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "models", "namespace": "default"},
         "spec": {"parentRefs": [{"name": "inference-gateway"}], "rules": [
             {"matches": [{"headers": [{"name": "X-Gateway-Model-Name", "value": "llama"}]}],
              "backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "llama"}]},
             {"matches": [{"headers": [{"name": "X-Gateway-Model-Name", "value": "qwen"}]}],
              "backendRefs": [{"group": "inference.networking.x-k8s.io", "kind": "InferencePool", "name": "qwen"}]},
         ]}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "to-missing-pool", "namespace": "default"},
         "spec": {"parentRefs": [{"name": "inference-gateway"}], "rules": [
             {"matches": [{"path": {"type": "PathPrefix", "value": "/missing"}}],
              "backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "nope"}]}]}},
    ]
    docs += [pod(f"llama-{i}", "llama", a) for i, a in enumerate(llama.addresses)]
    docs += [pod(f"qwen-{i}", "qwen", a) for i, a in enumerate(qwen.addresses)]
    return docs


def write(path: Path, docs: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump_all(docs))
    os.replace(tmp, path)


def address_pool() -> str:
    """A random 127.A.B.0/24 of our own, so concurrent tests do not share Gateway addresses."""
    _, a, b, _ = random_loopback_block(1, free_port())[0].split(".")
    return f"127.{a}.{b}.0/24"


@contextlib.asynccontextmanager
async def doubles() -> AsyncIterator[tuple[EchoServers, EchoServers, StampingEpp, StampingEpp]]:
    llama, qwen = EchoServers(2), EchoServers(2)
    llama_epp = StampingEpp("llama-epp", llama.endpoints)
    qwen_epp = StampingEpp("qwen-epp", qwen.endpoints)
    async with running(llama, qwen, llama_epp, qwen_epp):
        yield llama, qwen, llama_epp, qwen_epp


async def test_gateway_routes_by_model_name_across_two_pools_and_reports_statuses(tmp_path: Path,
                                                                                  envoy_bin: str) -> None:
    port = free_port()
    manifest_dir = tmp_path / "manifests"
    manifest_dir.mkdir()
    status_file = tmp_path / "status.yaml"
    async with doubles() as (llama, qwen, llama_epp, qwen_epp):
        docs = manifests(port, llama, qwen, llama_epp, qwen_epp)
        write(manifest_dir / "all.yaml", docs)
        results: list[TranslationResult] = []
        started = asyncio.Event()
        config = GatewayConfig(manifests_dir=str(manifest_dir), status_file=str(status_file), poll_interval=0.2,
                               address_pool=address_pool(), work_dir=str(tmp_path / "envoy"))
        task = asyncio.create_task(run_gateway(config, started=started,
                                               on_reconciled=lambda r, _: results.append(r)))
        try:
            await asyncio.wait_for(started.wait(), 30)
            (listener,) = results[0].ir.listeners
            base = f"http://{listener.address}:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                served: Counter[tuple[str, str]] = Counter()
                for i in range(20):
                    model = "llama" if i % 2 else "qwen"
                    r = await client.post("/v1/completions", json={"model": model, "prompt": "hi"})
                    assert r.status_code == 200, r.text
                    info = r.json()
                    assert info["epp"] == f"{model}-epp"  # the pool's own picker routed it
                    assert info["server"] in {f"{a}:{(llama if model == 'llama' else qwen).port}"
                                              for a in (llama if model == "llama" else qwen).addresses}
                    served[(model, info["server"])] += 1
                assert len(served) == 4  # both pods of both pools served
                r = await client.post("/missing/v1/completions", json={"model": "other", "prompt": "hi"})
                assert r.status_code == 500  # invalid backendRef: Gateway API says 500
                r = await client.post("/v1/completions", json={"model": "unknown", "prompt": "hi"})
                assert r.status_code == 404

                statuses = yaml.safe_load(status_file.read_text())
                gw = statuses["Gateway.gateway.networking.k8s.io default/inference-gateway"]
                assert gw["addresses"] == [{"type": "IPAddress", "value": listener.address}]
                assert {c["type"]: c["status"] for c in gw["conditions"]} == {"Accepted": "True", "Programmed": "True"}
                missing = statuses["HTTPRoute.gateway.networking.k8s.io default/to-missing-pool"]["parents"][0]
                assert {c["type"]: c["reason"] for c in missing["conditions"]} == {
                    "Accepted": "Accepted", "ResolvedRefs": "BackendNotFound"}
                qwen_status = statuses["InferencePool.inference.networking.x-k8s.io default/qwen"]["parent"][0]
                assert qwen_status["parentRef"]["namespace"] == "default"
                first_time = gw["conditions"][0]["lastTransitionTime"]

                # Edit the manifests: route every model to the qwen pool; the file watch picks it up.
                route = next(d for d in docs if d["metadata"]["name"] == "models")
                route["spec"]["rules"] = [{"backendRefs": [
                    {"group": "inference.networking.x-k8s.io", "kind": "InferencePool", "name": "qwen"}]}]
                write(manifest_dir / "all.yaml", docs)
                async def rerouted() -> bool:
                    r = await client.post("/v1/completions", json={"model": "llama", "prompt": "hi"})
                    return r.status_code == 200 and r.json()["epp"] == "qwen-epp"

                try:
                    await async_wait_until(rerouted, 10, interval=0.1, what="the manifest change")
                except WaitTimeout:
                    pytest.fail("the manifest change did not reach Envoy within 10 s")
                await asyncio.sleep(0.3)
                statuses = yaml.safe_load(status_file.read_text())
                gw = statuses["Gateway.gateway.networking.k8s.io default/inference-gateway"]
                assert gw["conditions"][0]["lastTransitionTime"] == first_time  # unchanged condition keeps its time
                llama_status = statuses["InferencePool.inference.networking.k8s.io default/llama"]
                assert llama_status == {"parents": []}  # no route references it any more
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_infergate_gateway_process_serves_and_stops_on_sigterm(tmp_path: Path, envoy_bin: str) -> None:
    port, admin = free_port(), free_port()
    manifest_dir = tmp_path / "manifests"
    manifest_dir.mkdir()
    async with doubles() as (llama, qwen, llama_epp, qwen_epp):
        write(manifest_dir / "all.yaml", manifests(port, llama, qwen, llama_epp, qwen_epp))
        log_path = tmp_path / "gateway.log"
        log = log_path.open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "infergate", "gateway", "-f", str(manifest_dir), "--admin-port", str(admin),
             "--address-pool", address_pool(), "--poll-interval", "0.2", "-v"],
            stdout=subprocess.PIPE, stderr=log, text=True)
        address = "?"
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                async def ready() -> bool:
                    assert proc.poll() is None, log_path.read_text()
                    with contextlib.suppress(httpx.HTTPError):
                        return (await client.get(f"http://127.0.0.1:{admin}/readyz")).status_code == 200
                    return False

                try:
                    await async_wait_until(ready, 30, interval=0.2, what="the gateway to be ready")
                except WaitTimeout:
                    pytest.fail(log_path.read_text())
                ir = (await client.get(f"http://127.0.0.1:{admin}/ir")).json()
                address = ir["listeners"][0]["address"]
                r = await client.post(f"http://{address}:{port}/v1/completions", json={"model": "llama", "prompt": "x"})
                assert r.status_code == 200 and r.json()["epp"] == "llama-epp", (r.text, log_path.read_text())
                statuses = (await client.get(f"http://127.0.0.1:{admin}/statuses")).json()
                assert "HTTPRoute.gateway.networking.k8s.io default/models" in statuses
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail("infergate gateway did not stop within 20 s of SIGTERM")
            finally:
                log.close()
        err = log_path.read_text()
        out = proc.stdout.read() if proc.stdout else ""
        assert proc.returncode == 0, err
        assert f"listening on http://{address}:{port}" in err
        assert out.splitlines()[0] == f"ready default/inference-gateway=http://{address}:{port}", out


async def test_an_invalid_backend_fails_only_its_weighted_share(tmp_path: Path, envoy_bin: str) -> None:
    """Gateway API: with two equal-weight backends of which one is invalid, about half of the
    requests get 500 and the rest are served (some gateways turn all traffic into 500s)."""
    port = free_port()
    manifest_dir = tmp_path / "manifests"
    manifest_dir.mkdir()
    async with doubles() as (llama, qwen, llama_epp, qwen_epp):
        docs = manifests(port, llama, qwen, llama_epp, qwen_epp)
        route = next(d for d in docs if d["metadata"]["name"] == "models")
        route["spec"]["rules"] = [{"backendRefs": [
            {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "llama", "weight": 50},
            {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "missing", "weight": 50}]}]
        write(manifest_dir / "all.yaml", docs)
        results: list[TranslationResult] = []
        started = asyncio.Event()
        config = GatewayConfig(manifests_dir=str(manifest_dir), address_pool=address_pool(),
                               work_dir=str(tmp_path / "envoy"))
        task = asyncio.create_task(run_gateway(config, started=started,
                                               on_reconciled=lambda r, _: results.append(r)))
        try:
            await asyncio.wait_for(started.wait(), 30)
            (listener,) = results[0].ir.listeners
            total = 200
            async with httpx.AsyncClient(base_url=f"http://{listener.address}:{port}", timeout=10) as client:
                codes = Counter()
                for _ in range(total):
                    r = await client.post("/v1/completions", json={"model": "llama", "prompt": "hi"})
                    codes[r.status_code] += 1
                    if r.status_code == 200:
                        assert r.json()["epp"] == "llama-epp"
            assert set(codes) == {200, 500}, codes
            tolerance = max(0.10, 3 * (0.25 / total) ** 0.5)
            assert abs(codes[500] / total - 0.5) <= tolerance, codes
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
