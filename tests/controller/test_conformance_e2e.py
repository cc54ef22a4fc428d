"""Upstream's GIE v1.0.0 conformance scenarios, end to end, on infergate's own control plane.

The embedded API server gets the upstream CRDs and the conformance manifests (``base.yaml`` +
each test's manifest, applied with the real kubectl; the listener port 80 is replaced by a
free port so the test needs no privileges). The cluster's Pods are created by the test with the
addresses of echo model servers (like upstream's echo-basic, they answer any path and say which
pod served). Each pool's EPP is a real `infergate epp` process reading the API server, with
upstream's conformance plugin config (header-based-testing-filter); EndpointSlices point each
EPP Service at its process. The gateway is `infergate gateway --kubeconfig`. Statuses are read
back with kubectl and traffic is sent to the addresses the Gateways report, as upstream does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer
from infergate.bench.topology import ManagedProcess, PortPool, python_argv
from infergate.util.net import random_loopback_block

from ..dataplane.support import LoopbackServers
from ..support.eventually import async_eventually

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("gateway-conformance-e2e")]
LOOP = pytest.mark.asyncio(loop_scope="module")
APP, INFRA = "gateway-conformance-app-backend", "gateway-conformance-infra"
PLUGINS = """apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: header-based-testing-filter
schedulingProfiles:
- name: conformance-profile
  plugins:
  - pluginRef: header-based-testing-filter
"""
METRICS = ('vllm:num_requests_waiting{model_name="m"} 0\nvllm:gpu_cache_usage_perc{model_name="m"} 0.1\n'
           'vllm:kv_cache_usage_perc{model_name="m"} 0.1\n')


class EchoPods(LoopbackServers):
    """Like upstream's echo-basic: any path answers JSON naming the pod (one address per pod)."""

    def __init__(self, prefix: str, count: int, port: int = 3000) -> None:
        super().__init__(count, port)
        self.names = {a: f"{prefix}-{i}" for i, a in enumerate(self.addresses)}

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path == "/metrics":
            return web.Response(text=METRICS)
        host = request.transport.get_extra_info("sockname")[0] if request.transport else "?"
        await request.read()
        return web.json_response({"pod": self.names.get(host, "?"), "path": request.path, "host": request.host})


@dataclass
class Env:
    kubectl: Callable[..., str]
    conformance: Path
    primary: EchoPods
    secondary: EchoPods
    epps: dict[str, ManagedProcess]
    listen_port: int

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def gateway_url(self, name: str) -> str:
        gw = self.get("gateway", "-n", INFRA, name)
        return f"http://{gw['status']['addresses'][0]['value']}:{self.listen_port}"


def conds(entry: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in entry.get("conditions") or []}



@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, kubectl_bin: str, reference_dir: Path,
              envoy_bin: str) -> AsyncIterator[Env]:
    work = tmp_path_factory.mktemp("conformance")
    api: ThreadedAPIServer = EmbeddedAPIServer.run_in_thread(work / "apiserver")
    kube_env = {**os.environ, "KUBECONFIG": str(api.kubeconfig_path), "HOME": str(work / "home")}

    def kubectl(*args: str, input: str | None = None) -> str:
        proc = subprocess.run([kubectl_bin, *args], input=input, capture_output=True, text=True, env=kube_env,
                              timeout=60)
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc.stdout

    ports = PortPool()
    listen = ports()
    conformance = reference_dir / "gie-v1.0.0" / "conformance"
    primary, secondary = EchoPods("primary-inference-model-server", 3), EchoPods("secondary-inference-model-server", 3)
    started: list[Any] = []
    epps: dict[str, ManagedProcess] = {}
    try:
        crds = [*sorted((reference_dir / "gie-v1.0.0" / "crd").glob("*.yaml")),
                *sorted((reference_dir / "gateway-api-v1.3.0" / "crd").glob("*.yaml"))]
        kubectl("apply", *[a for f in crds for a in ("-f", str(f))])
        base = (conformance / "base.yaml").read_text().replace("{GATEWAY_CLASS_NAME}", "infergate")
        base = base.replace("port: 80\n", f"port: {listen}\n")
        kubectl("apply", "-f", "-", input=base + "\n---\napiVersion: gateway.networking.k8s.io/v1\n"
                "kind: GatewayClass\nmetadata: {name: infergate}\nspec: {controllerName: infergate.io/gateway-controller}\n")
        for pods, app in ((primary, "primary-inference-model-server"), (secondary, "secondary-inference-model-server")):
            await pods.start()
            started.append(pods)
            for address, name in pods.names.items():
                kubectl("apply", "-f", "-", input=json.dumps({
                    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": APP, "labels": {"app": app}},
                    "spec": {"containers": [{"name": "echoserver", "image": "echo-basic",
                                             "ports": [{"containerPort": 3000}]}]}}))
                pod = json.loads(kubectl("get", "pod", "-n", APP, name, "-o", "json"))
                pod["status"] = {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}],
                                 "conditions": [{"type": "Ready", "status": "True"}]}
                kubectl("replace", "--subresource=status", "-f", "-", input=json.dumps(pod))
        (work / "plugins.yaml").write_text(PLUGINS)
        for which in ("primary", "secondary"):
            grpc = ports()
            epp = ManagedProcess(python_argv(
                "epp", "--pool-name", f"{which}-inference-pool", "--pool-namespace", APP,
                "--kubeconfig", str(api.kubeconfig_path), "--config-file", str(work / "plugins.yaml"),
                "--host", "127.0.0.1", "--grpc-port", str(grpc), "--grpc-health-port", str(ports()),
                "--metrics-port", str(ports())), name=f"epp-{which}", log_path=work / f"epp-{which}.log")
            await epp.start()
            await epp.read_ready_line("ready", 30)
            started.append(epp)
            epps[which] = epp
            kubectl("apply", "-f", "-", input=json.dumps({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{which}-endpoint-picker-svc-1", "namespace": APP,
                             "labels": {"kubernetes.io/service-name": f"{which}-endpoint-picker-svc"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
                "ports": [{"port": grpc, "protocol": "TCP"}]}))
        _, a, b, _ = random_loopback_block(1, listen)[0].split(".")
        gateway = ManagedProcess(python_argv(
            "gateway", "--kubeconfig", str(api.kubeconfig_path), "--address-pool", f"127.{a}.{b}.0/24",
            "--work-dir", str(work / "envoy"), "-v"), name="gateway", log_path=work / "gateway.log")
        await gateway.start()
        started.append(gateway)
        environment = Env(kubectl, conformance, primary, secondary, epps, listen)

        def programmed() -> bool:
            for name in ("conformance-primary", "conformance-secondary"):
                gw = environment.get("gateway", "-n", INFRA, name)
                assert conds(gw["status"])["Programmed"] == ("True", "Programmed"), gw.get("status")
            return True

        try:
            await async_eventually(programmed, 40)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{(work / 'gateway.log').read_text()[-3000:]}") from None
        yield environment
    finally:
        for thing in reversed(started):
            await thing.stop()
        api.stop()


@contextlib.contextmanager
def applied(env: Env, manifest: str) -> Any:
    path = env.conformance / manifest
    env.kubectl("apply", "-f", str(path))
    try:
        yield
    finally:
        env.kubectl("delete", "-f", str(path), "--ignore-not-found")


def pool_parent(env: Env, pool: str, gateway: str) -> dict[str, tuple[str, str]]:
    status = env.get("inferencepools.inference.networking.k8s.io", "-n", APP, pool)["status"]
    (parent,) = [p for p in status["parents"] if p["parentRef"]["name"] == gateway]
    assert parent["parentRef"]["namespace"] == INFRA  # upstream requires it explicitly
    return conds(parent)


def route_parent(env: Env, route: str) -> dict[str, tuple[str, str]]:
    (parent,) = env.get("httproute", "-n", APP, route)["status"]["parents"]
    return conds(parent)


async def send(url: str, path: str, host: str | None = None, ips: list[str] | None = None) -> httpx.Response:
    headers = {"host": host} if host else {}
    async with httpx.AsyncClient(timeout=10) as client:
        if ips is None:  # upstream's plain requests are GETs without a body
            return await client.get(url + path, headers=headers)
        headers["test-epp-endpoint-selection"] = ",".join(ips)
        return await client.post(url + path, headers=headers, json={
            "model": "conformance-fake-model", "prompt": "Write as if you were a critic: San Francisco"})


@LOOP
async def test_inferencepool_accepted(env: Env) -> None:
    with applied(env, "inferencepool_accepted.yaml"):
        await async_eventually(lambda: pool_parent(env, "primary-inference-pool", "conformance-primary")["Accepted"][0] == "True")
        url = env.gateway_url("conformance-primary")
        r = await async_eventually(lambda: _ok(send(url, "/accepted-pool-test")))
        assert r.json()["pod"].startswith("primary-inference-model-server")


async def _ok(pending: Any) -> httpx.Response | None:
    r = await pending
    return r if r.status_code == 200 else None


@LOOP
async def test_gateway_following_epp_routing(env: Env) -> None:
    with applied(env, "gateway_following_epp_routing.yaml"):
        assert await async_eventually(lambda: route_parent(env, "httproute-for-primary-gw") == {
            "Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")})
        url = env.gateway_url("conformance-primary")
        for address, name in env.primary.names.items():
            r = await async_eventually(lambda a=address: _ok(send(url, "/primary-gateway-test", "primary.example.com", [a])))
            assert r.json()["pod"] == name
        ips = env.primary.addresses
        for subset in (ips[:1], ips[:2], ips):
            names = {env.primary.names[a] for a in subset}
            results = await asyncio.gather(*(send(url, "/primary-gateway-test", "primary.example.com", subset)
                                             for _ in range(10)))
            assert all(r.status_code == 200 and r.json()["pod"] in names for r in results)


@LOOP
async def test_httproute_invalid_inferencepool_ref(env: Env) -> None:
    with applied(env, "httproute_invalid_inferencepool_ref.yaml"):
        assert await async_eventually(lambda: route_parent(env, "httproute-to-non-existent-pool") == {
            "Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "BackendNotFound")})
        r = await async_eventually(lambda: _status(send(env.gateway_url("conformance-primary"), "/test-non-existent-pool"), 500))
        assert r.status_code == 500


async def _status(pending: Any, code: int) -> httpx.Response | None:
    r = await pending
    return r if r.status_code == code else None


@LOOP
async def test_inferencepool_invalid_epp_service(env: Env) -> None:
    with applied(env, "inferencepool_invalid_epp_service.yaml"):
        await async_eventually(lambda: route_parent(env, "httproute-for-invalid-epp-pool")["Accepted"] == ("True", "Accepted"))
        await async_eventually(lambda: pool_parent(env, "pool-with-invalid-epp", "conformance-primary")["ResolvedRefs"] == (
            "False", "InvalidExtensionRef"))
        url = env.gateway_url("conformance-primary")
        r = await async_eventually(lambda: _ok_if(send(url, "/invalid-epp-test"), lambda r: r.status_code >= 500))
        assert 500 <= r.status_code < 600


async def _ok_if(pending: Any, predicate: Callable[[httpx.Response], bool]) -> httpx.Response | None:
    r = await pending
    return r if predicate(r) else None


@LOOP
async def test_inferencepool_resolvedrefs_condition_and_route_deletion(env: Env) -> None:
    path = env.conformance / "inferencepool_resolvedrefs_condition.yaml"
    env.kubectl("apply", "-f", str(path))
    try:
        def both() -> bool:
            for gw in ("conformance-primary", "conformance-secondary"):
                assert pool_parent(env, "primary-inference-pool", gw)["Accepted"] == ("True", "Accepted")
            return True

        await async_eventually(both)
        primary, secondary = env.gateway_url("conformance-primary"), env.gateway_url("conformance-secondary")
        await async_eventually(lambda: _ok(send(primary, "/primary-gateway-test", "primary.example.com")))
        await async_eventually(lambda: _ok(send(secondary, "/secondary-gateway-test", "secondary.example.com")))
        env.kubectl("delete", "httproute", "-n", APP, "httproute-for-primary-gw")
        await async_eventually(lambda: [p["parentRef"]["name"] for p in env.get(
            "inferencepools.inference.networking.k8s.io", "-n", APP, "primary-inference-pool")["status"]["parents"]
        ] == ["conformance-secondary"])
        await async_eventually(lambda: _status(send(primary, "/primary-gateway-test", "primary.example.com"), 404))
        env.kubectl("delete", "httproute", "-n", APP, "httproute-for-secondary-gw")
        await async_eventually(lambda: env.get("inferencepools.inference.networking.k8s.io", "-n", APP,
                                         "primary-inference-pool")["status"]["parents"] == [])
        await async_eventually(lambda: _status(send(secondary, "/secondary-gateway-test", "secondary.example.com"), 404))
    finally:
        env.kubectl("delete", "-f", str(path), "--ignore-not-found")


@LOOP
async def test_inferencepool_httproute_port_validation(env: Env) -> None:
    with applied(env, "inferencepool_httproute_port_validation.yaml"):
        url = env.gateway_url("conformance-primary")
        for name, host, path in (("unspecified", "port-unspecified.example.com", "/test-port-unspecified"),
                                 ("matching", "port-matching.example.com", "/test-port-matching"),
                                 ("non-matching", "port-non-matching.example.com", "/test-port-non-matching")):
            await async_eventually(lambda n=name: route_parent(env, f"httproute-pool-port-{n}") == {
                "Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")})
            r = await async_eventually(lambda h=host, p=path: _ok(send(url, p, h)))
            assert r.json()["pod"].startswith("primary-inference-model-server")


@LOOP
async def test_multiple_gateways_and_multiple_rules_route_to_their_pools(env: Env) -> None:
    with applied(env, "httproute_multiple_gateways_different_pools.yaml"):
        primary, secondary = env.gateway_url("conformance-primary"), env.gateway_url("conformance-secondary")
        r = await async_eventually(lambda: _ok(send(primary, "/test-primary-gateway", "primary.example.com")))
        assert r.json()["pod"].startswith("primary-inference-model-server")
        r = await async_eventually(lambda: _ok(send(secondary, "/test-secondary-gateway", "secondary.example.com")))
        assert r.json()["pod"].startswith("secondary-inference-model-server")
    with applied(env, "inferencepool_multiple_rules_different_pools.yaml"):
        for pool in ("primary-inference-pool", "secondary-inference-pool"):
            await async_eventually(lambda p=pool: pool_parent(env, p, "conformance-primary")["Accepted"] == ("True", "Accepted"))
        url = env.gateway_url("conformance-primary")
        r = await async_eventually(lambda: _ok(send(url, "/primary")))
        assert r.json()["pod"].startswith("primary-inference-model-server")
        r = await async_eventually(lambda: _ok(send(url, "/secondary")))
        assert r.json()["pod"].startswith("secondary-inference-model-server")


@LOOP
async def test_epp_unavailable_fail_open(env: Env) -> None:
    """Runs last: it stops the secondary EPP."""
    with applied(env, "epp_unavailable_fail_open.yaml"):
        url = env.gateway_url("conformance-secondary")
        target = env.secondary.addresses[1]
        r = await async_eventually(lambda: _ok(send(url, "/failopen-pool-test", "secondary.example.com", [target])))
        assert r.json()["pod"] == env.secondary.names[target]
        # Upstream breaks the primary EPP Service's selector (as written in v1.0.0) ...
        env.kubectl("patch", "service", "-n", APP, "primary-endpoint-picker-svc", "--type=merge",
                    "-p", '{"spec": {"selector": {"app": "does-not-exist"}}}')
        # ... and we also stop the secondary pool's own EPP: FailOpen still serves, inside the pool.
        await env.epps["secondary"].stop()
        for _ in range(6):
            r = await async_eventually(lambda: _ok(send(url, "/failopen-pool-test", "secondary.example.com", [target])))
            assert r.json()["pod"].startswith("secondary-inference-model-server")
