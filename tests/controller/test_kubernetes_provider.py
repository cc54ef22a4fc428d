"""The Kubernetes provider against a real API server (infergate's embedded one) with the
upstream CRDs applied by the real kubectl: list+watch, and statuses written through the
status subresource as upstream's conformance tests read them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer
from infergate.controller.providers.kubernetes import KubernetesProvider, load_api_client
from infergate.controller.resources import ObjectRef
from infergate.controller.runner import Reconciler
from infergate.controller.translator import TranslatorOptions
from infergate.controller.translator.addresses import LoopbackAllocator
from infergate.ir import DataplaneConfig
from infergate.kube.client import KubeClient
from infergate.kube.config import load_config

from .tls_support import TestCA

pytestmark = pytest.mark.e2e
APP, INFRA = "gateway-conformance-app-backend", "gateway-conformance-infra"


class RecordingDataplane:
    """Stands in for Envoy here (the Envoy path is covered by test_gateway_e2e): records the IR."""

    def __init__(self) -> None:
        self.applied: list[DataplaneConfig] = []

    async def apply(self, ir: DataplaneConfig) -> None:
        self.applied.append(ir)


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedAPIServer]:
    with EmbeddedAPIServer.run_in_thread(tmp_path_factory.mktemp("apiserver")) as handle:
        yield handle


@pytest.fixture(scope="module")
def kubectl(apiserver: ThreadedAPIServer, kubectl_bin: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Callable[..., str]:
    home = tmp_path_factory.mktemp("home")
    env = {**os.environ, "KUBECONFIG": str(apiserver.kubeconfig_path), "HOME": str(home)}

    def run(*args: str, input: str | None = None) -> str:
        proc = subprocess.run([kubectl_bin, *args], input=input, capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc.stdout

    return run


def get(kubectl: Callable[..., str], *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json"))


def conds(entry: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in entry.get("conditions") or []}


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (AssertionError, KeyError, IndexError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout}s: {last}")


@pytest.fixture(scope="module")
def crds(kubectl: Callable[..., str], reference_dir: Path) -> None:
    files = [*sorted((reference_dir / "gie-v1.0.0" / "crd").glob("*.yaml")),
             *sorted((reference_dir / "gateway-api-v1.3.0" / "crd").glob("*.yaml"))]
    kubectl("apply", *[a for f in files for a in ("-f", str(f))])


async def test_kubernetes_provider_lists_watches_and_writes_statuses(
        apiserver: ThreadedAPIServer, kubectl: Callable[..., str], reference_dir: Path, crds: None) -> None:
    conformance = reference_dir / "gie-v1.0.0" / "conformance"
    base = (conformance / "base.yaml").read_text().replace("{GATEWAY_CLASS_NAME}", "infergate")
    kubectl("apply", "-f", "-", input=base + "\n---\n" + (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: infergate}\n"
        "spec: {controllerName: infergate.io/gateway-controller}\n"))
    kubectl("apply", "-f", str(conformance / "inferencepool_accepted.yaml"),
            "-f", str(conformance / "httproute_invalid_inferencepool_ref.yaml"))
    # Another controller's entry on a route must survive our writes.
    route = get(kubectl, "httproute", "-n", APP, "httproute-for-inferencepool-accepted")
    route["status"] = {"parents": [{"parentRef": {"name": "someone-elses-gateway"},
                                    "controllerName": "example.com/other", "conditions": [
                                        {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                                         "lastTransitionTime": "2020-01-01T00:00:00Z"}]}]}
    kubectl("replace", "--subresource=status", "-f", "-", input=json.dumps(route))

    dataplane = RecordingDataplane()
    provider = KubernetesProvider(load_api_client(str(apiserver.kubeconfig_path)), watch_timeout=5,
                                  retry_delay=0.5)
    options = TranslatorOptions(addresses=LoopbackAllocator("127.0.2.0/24"))
    reconciler = Reconciler(provider, dataplane, options, debounce=0.05)
    await provider.start(sync_timeout=20)
    task = asyncio.create_task(reconciler.run())
    try:
        def all_statuses_written() -> dict[str, Any]:
            gw = get(kubectl, "gateway", "-n", INFRA, "conformance-primary")
            assert conds(gw["status"]) == {"Accepted": ("True", "Accepted"), "Programmed": ("True", "Programmed")}
            assert gw["status"]["addresses"][0]["value"].startswith("127.0.2.")
            assert gw["status"]["listeners"][0]["attachedRoutes"] == 2
            gwc = get(kubectl, "gatewayclass", "infergate")
            assert conds(gwc["status"])["Accepted"] == ("True", "Accepted")
            route = get(kubectl, "httproute", "-n", APP, "httproute-to-non-existent-pool")
            (parent,) = route["status"]["parents"]
            assert parent["parentRef"]["namespace"] == INFRA
            assert conds(parent) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("False", "BackendNotFound")}
            route = get(kubectl, "httproute", "-n", APP, "httproute-for-inferencepool-accepted")
            assert [p["controllerName"] for p in route["status"]["parents"]] == [
                "example.com/other", "infergate.io/gateway-controller"]
            pool = get(kubectl, "inferencepools.inference.networking.k8s.io", "-n", APP, "primary-inference-pool")
            (parent,) = pool["status"]["parents"]
            assert parent["parentRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                           "namespace": INFRA, "name": "conformance-primary"}
            assert conds(parent) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
            return dict(parent)

        parent = await asyncio.to_thread(wait_for, all_statuses_written)
        accepted_time = parent["conditions"][0]["lastTransitionTime"]
        assert not dataplane.applied[-1].pool(f"pool/inference.networking.k8s.io/{APP}/primary-inference-pool"
                                              ).endpoints  # no pods yet

        # A pod becomes ready: the watch delivers it and the pool gets an endpoint.
        kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "primary-0", "namespace": APP, "labels": {"app": "primary-inference-model-server"}},
            "spec": {"containers": [{"name": "echo", "image": "echo"}]}}))
        pod = get(kubectl, "pod", "-n", APP, "primary-0")
        pod["status"] = {"phase": "Running", "podIP": "10.9.0.1", "podIPs": [{"ip": "10.9.0.1"}],
                         "conditions": [{"type": "Ready", "status": "True"}]}
        kubectl("replace", "--subresource=status", "-f", "-", input=json.dumps(pod))

        def pod_in_pool() -> bool:
            ir = dataplane.applied[-1]
            endpoints = ir.pool(f"pool/inference.networking.k8s.io/{APP}/primary-inference-pool").endpoints
            assert [(e.address, e.port) for e in endpoints] == [("10.9.0.1", 3000)]
            return True

        await asyncio.to_thread(wait_for, pod_in_pool)

        # Deleting the route removes the Gateway from the pool's parents.
        kubectl("delete", "httproute", "-n", APP, "httproute-for-inferencepool-accepted")

        def pool_unparented() -> bool:
            pool = get(kubectl, "inferencepools.inference.networking.k8s.io", "-n", APP, "primary-inference-pool")
            assert pool["status"]["parents"] == []
            return True

        await asyncio.to_thread(wait_for, pool_unparented)
        gw = get(kubectl, "gateway", "-n", INFRA, "conformance-primary")
        assert gw["status"]["listeners"][0]["attachedRoutes"] == 1
        assert accepted_time  # times are RFC 3339 strings written by the controller
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await provider.stop()


async def test_status_write_retries_on_conflict_and_keeps_the_concurrent_writers_entry(
        apiserver: ThreadedAPIServer, kubectl: Callable[..., str], crds: None) -> None:
    kubectl("create", "namespace", "conflict")
    kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "conflict"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]}}))
    other = {"parentRef": {"name": "elsewhere"}, "controllerName": "example.com/other", "conditions": [
        {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
         "lastTransitionTime": "2020-01-01T00:00:00Z"}]}
    calls: list[str] = []

    class RacingClient(KubeClient):
        async def replace(self, path: str, obj: Any, *, params: Any = None) -> dict[str, Any]:
            calls.append(path)
            if len(calls) == 1:  # another controller writes between our GET and our PUT
                route = get(kubectl, "httproute", "-n", "conflict", "r")
                route["status"] = {"parents": [other]}
                kubectl("replace", "--subresource=status", "-f", "-", input=json.dumps(route))
            return await super().replace(path, obj, params=params)

    client = RacingClient(load_config(apiserver.kubeconfig_path))
    provider = KubernetesProvider(client)
    ours = {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "conflict",
                          "name": "gw"},
            "controllerName": "infergate.io/gateway-controller", "conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "ok",
                 "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    ref = ObjectRef("gateway.networking.k8s.io", "HTTPRoute", "conflict", "r")
    async with client:
        assert await provider._write_status(ref, {"parents": [ours]}, "infergate.io/gateway-controller", frozenset())
    assert calls == ["/apis/gateway.networking.k8s.io/v1/namespaces/conflict/httproutes/r/status"] * 2
    # the first PUT got 409 Conflict; the second, re-merged, succeeded
    parents = get(kubectl, "httproute", "-n", "conflict", "r")["status"]["parents"]
    assert [p["controllerName"] for p in parents] == ["example.com/other", "infergate.io/gateway-controller"]


async def test_https_listener_certificates_from_secrets_created_by_kubectl(
        apiserver: ThreadedAPIServer, kubectl: Callable[..., str], crds: None, tmp_path: Path) -> None:
    ns = "https-test"
    ca = TestCA()

    def create_tls_secret(name: str, hostname: str, verb: str = "create") -> bytes:
        certificate = ca.issue(hostname)
        (tmp_path / "tls.crt").write_text(certificate.certificate_pem)
        (tmp_path / "tls.key").write_text(certificate.key_pem)
        args = ("create", "secret", "tls", name, "-n", ns, f"--cert={tmp_path / 'tls.crt'}",
                f"--key={tmp_path / 'tls.key'}")
        if verb == "create":
            kubectl(*args)
        else:  # rotation, the way cert-manager or an operator replaces the data
            kubectl("apply", "-f", "-", input=kubectl(*args, "--dry-run=client", "-o", "yaml"))
        return certificate.certificate_pem.encode()

    kubectl("create", "namespace", ns)
    create_tls_secret("a-cert", "a.example.test")
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "infergate"},
         "spec": {"controllerName": "infergate.io/gateway-controller"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": ns},
         "spec": {"gatewayClassName": "infergate", "listeners": [
             {"name": name, "port": 8443, "protocol": "HTTPS", "hostname": f"{name}.example.test",
              "tls": {"certificateRefs": [{"name": f"{name}-cert"}]}} for name in ("a", "b")]}},
    ]}))

    dataplane = RecordingDataplane()
    provider = KubernetesProvider(load_api_client(str(apiserver.kubeconfig_path)), watch_timeout=5, retry_delay=0.5)
    reconciler = Reconciler(provider, dataplane, TranslatorOptions(addresses=LoopbackAllocator("127.0.4.0/24")),
                            debounce=0.05)
    await provider.start(sync_timeout=20)
    task = asyncio.create_task(reconciler.run())

    def listener_conds() -> dict[str, dict[str, tuple[str, str]]]:
        gw = get(kubectl, "gateway", "-n", ns, "gw")
        return {lst["name"]: conds(lst) for lst in gw["status"]["listeners"]}

    def https_certificates() -> dict[str, str]:
        ir = dataplane.applied[-1]
        return {c.key: c.certificate_chain for c in ir.certificates if c.key.startswith(f"secret/{ns}/")}

    try:
        def b_missing() -> bool:
            found = listener_conds()
            assert found["a"]["Programmed"] == ("True", "Programmed")
            assert found["b"]["ResolvedRefs"] == ("False", "InvalidCertificateRef")
            assert found["b"]["Programmed"] == ("False", "Invalid")
            return True

        await asyncio.to_thread(wait_for, b_missing)

        b_pem = create_tls_secret("b-cert", "b.example.test")

        def b_programmed() -> bool:
            assert listener_conds()["b"]["Programmed"] == ("True", "Programmed")
            assert https_certificates()[f"secret/{ns}/b-cert"].encode() == b_pem
            return True

        await asyncio.to_thread(wait_for, b_programmed)
        listeners_before = [lst for lst in dataplane.applied[-1].listeners if lst.gateway_namespace == ns]

        rotated_pem = create_tls_secret("a-cert", "a.example.test", verb="apply")

        def a_rotated() -> bool:
            assert https_certificates()[f"secret/{ns}/a-cert"].encode() == rotated_pem
            return True

        await asyncio.to_thread(wait_for, a_rotated)
        assert [lst for lst in dataplane.applied[-1].listeners if lst.gateway_namespace == ns] == listeners_before
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await provider.stop()
