"""A pod the local runtime removes leaves its Services before its process is signalled.

The kubelet's order, which a rolling update with zero failed requests depends on: the Pod
is marked terminating in the API (endpoints, and here the service proxy, drop it), the
container's ``preStop`` pause runs, then SIGTERM (the program drains), and the Pod object goes
once the process has exited. Before, the runtime signalled first and deleted the Pod object
only after the process had exited: the proxy kept sending new connections to an Envoy pod
that was draining and then exiting, so a connection opened as it exited was reset (the
chart's e2e test lost a streamed request that way during the Envoy Deployment's rollout).
"""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import infergate.apiserver.runtime.process as process_module
from infergate.apiserver.runtime.service_proxy import ServiceProxy
from infergate.kube import kinds
from infergate.util.net import free_port, random_loopback_block
from infergate.util.wait import async_wait_until

from .conftest import running_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("runtime-e2e")]


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def sim_deployment(repo_root: Path, name: str, replicas: int, pre_stop_s: int) -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(yaml.safe_load((repo_root / "examples" / "sim-deployment.yaml").read_text()))
    doc["metadata"]["name"] = name
    doc["spec"]["replicas"] = replicas
    doc["spec"]["selector"]["matchLabels"] = doc["spec"]["template"]["metadata"]["labels"] = {"app": name}
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["args"].append("--time-scale=20")
    container["readinessProbe"]["periodSeconds"] = 1
    container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(pre_stop_s)]}}}
    return doc


async def test_a_scaled_down_pod_leaves_the_service_proxy_before_its_sigterm(
        tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster_ip = random_loopback_block(1, 9, rng=random.Random())[0]
    port = free_port(cluster_ip)
    async with running_cluster(tmp_path) as (_, _, client):
        proxy = ServiceProxy(client)
        await proxy.start()
        signalled: dict[str, tuple[float, set[str], bool | None]] = {}  # pod -> (when, backend IPs, Ready in the API)
        real_terminate = process_module.terminate  # type: ignore[attr-defined]

        async def observed_terminate(proc: Any, grace: float, *, name: str = "the process") -> int | None:
            pod_name = name.split()[1].split("/", 1)[1]  # "pod NS/NAME container C"
            pod = await client.get(kinds.PODS.path("default", pod_name))
            signalled[pod_name] = (time.monotonic(), {ip for ip, _ in proxy.backends_of(cluster_ip, port)},
                                   None if pod is None else is_ready(pod))
            return await real_terminate(proc, grace, name=name)

        monkeypatch.setattr(process_module, "terminate", observed_terminate)
        try:
            await client.create(kinds.DEPLOYMENTS.path("default"), sim_deployment(repo_root, "ordered", 2, 1))
            await client.create(kinds.SERVICES.path("default"), {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "ordered"},
                "spec": {"clusterIP": cluster_ip, "selector": {"app": "ordered"},
                         "ports": [{"name": "http", "port": port, "targetPort": "http"}]}})
            await async_wait_until(lambda: len(proxy.backends_of(cluster_ip, port)) == 2, 40, interval=0.1,
                                   what="two ready backends")
            listing = await client.list(kinds.PODS.path("default"), label_selector="app=ordered")
            ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in listing["items"]}

            scaled = time.monotonic()
            await client.merge_patch(kinds.DEPLOYMENTS.path("default", "ordered", "scale"), {"spec": {"replicas": 1}})

            async def one_pod_left() -> bool:
                pods = await client.list(kinds.PODS.path("default"), label_selector="app=ordered")
                return len(pods["items"]) == 1 and bool(signalled)

            await async_wait_until(one_pod_left, 20, interval=0.1, what="the scaled-down pod gone")
            ((name, (at, backends, ready)),) = signalled.items()
            assert ready is False, f"{name} was still Ready in the API when it got SIGTERM"
            assert ips[name] not in backends, f"{name} was still a backend of the service proxy at its SIGTERM"
            assert at - scaled >= 0.9, f"SIGTERM {at - scaled:.2f}s after the scale-down: no preStop pause"
            assert len(proxy.backends_of(cluster_ip, port)) == 1
            await client.delete(kinds.DEPLOYMENTS.path("default", "ordered"))
        finally:
            await proxy.stop()
