"""A pool installed before the route that uses it is never an invalid backend for that route
(issue 17, the source document's zero-downtime commands pasted back to back).

The document's stage 1 installs the GA CRDs, then the GA pool (helm), then stage 2 points the
route at it, each command right after the previous one. The gateway's provider must see the pool
whenever it sees the route: a pool kind whose CRD was not installed when the gateway started
used to be polled every 2 s, so for up to 2 s the 50/50 route's GA half answered
500 ``infergate: the route's backend is not valid``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer
from infergate.controller.providers.kubernetes import KubernetesProvider, load_api_client
from infergate.controller.translator.rules import compile_route

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
GA = "inference.networking.k8s.io"

POOL = f"""\
apiVersion: {GA}/v1
kind: InferencePool
metadata: {{name: ga, namespace: default}}
spec:
  selector: {{matchLabels: {{app: vllm}}}}
  targetPorts: [{{number: 8000}}]
  endpointPickerRef: {{name: ga-epp, port: {{number: 9002}}}}
"""
ROUTE = f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: llm-route, namespace: default}}
spec:
  parentRefs: [{{name: inference-gateway}}]
  rules:
  - backendRefs: [{{group: {GA}, kind: InferencePool, name: ga}}]
"""


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[ThreadedAPIServer]:
    handle = EmbeddedAPIServer.run_in_thread(tmp_path / "apiserver")
    try:
        yield handle
    finally:
        handle.stop()


def kubectl(kubectl_bin: str, apiserver: ThreadedAPIServer, home: Path, *args: str, stdin: str | None = None) -> None:
    env = {**os.environ, "KUBECONFIG": str(apiserver.kubeconfig_path), "HOME": str(home)}
    run = subprocess.run([kubectl_bin, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, f"kubectl {' '.join(args)}: {run.stdout}{run.stderr}"


async def test_a_pool_applied_right_after_its_crd_is_seen_with_the_route_that_follows(
        apiserver: ThreadedAPIServer, kubectl_bin: str, tmp_path: Path) -> None:
    home = tmp_path / "home"

    async def run(*args: str, stdin: str | None = None) -> None:
        await asyncio.to_thread(kubectl, kubectl_bin, apiserver, home, *args, stdin=stdin)

    await run("apply", "-f", str(REPO / "config" / "crd" / "gateway-api.yaml"))
    # the gateway starts before the GA CRDs exist (a preview cluster): the GA pool kind is not served
    provider = KubernetesProvider(load_api_client(apiserver.kubeconfig_path))
    await provider.start(sync_timeout=10)
    try:
        await run("apply", "-f", str(REPO / "config" / "crd" / "ga.yaml"))  # stage 1: the CRDs ...
        await run("apply", "-f", "-", stdin=POOL)  # ... the pool (helm install) ...
        await run("apply", "-f", "-", stdin=ROUTE)  # ... stage 2: the route, right after
        # every snapshot the gateway could translate from now on: once it has the route, it has the pool
        deadline = time.monotonic() + 5.0
        while True:
            snapshot = provider.snapshot()
            route = snapshot.get("gateway.networking.k8s.io", "HTTPRoute", "default", "llm-route")
            if route is not None:
                break
            assert time.monotonic() < deadline, "the provider never saw the route"
            await asyncio.sleep(0.01)
        assert snapshot.get(GA, "InferencePool", "default", "ga") is not None, \
            "the route was seen before the pool applied ahead of it: its backend would be invalid (500)"
        compiled = compile_route(snapshot, route)
        assert not compiled.issues and [b.kind for b in compiled.rules[0].backends] == ["pool"], compiled.issues
    finally:
        await provider.stop()
