"""The service proxy on the embedded API server and the local runtime, with real `infergate sim` pods.

A Service of type LoadBalancer selecting a 2-replica simulator Deployment (named target port)
answers on its cluster IP and on the load-balancer address the proxy allocated and wrote to
``status.loadBalancer.ingress``; requests go round robin to both pods; scaling down to one
leaves only that pod as a backend; a new proxy keeps the address; changing the type to
ClusterIP clears the ingress and the load-balancer listener; deleting the Service stops the
listeners and clears the allocation.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import random
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from infergate.apiserver.runtime.service_proxy import ServiceProxy, ServiceProxyOptions
from infergate.kube import kinds
from infergate.util.net import free_port, random_loopback_block
from infergate.util.wait import async_wait_until

from .conftest import running_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("runtime-e2e")]
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def sim_deployment(repo_root: Path, name: str, replicas: int) -> dict[str, Any]:
    doc = copy.deepcopy(yaml.safe_load((repo_root / "examples" / "sim-deployment.yaml").read_text()))
    doc["metadata"]["name"] = name
    doc["spec"]["replicas"] = replicas
    doc["spec"]["selector"]["matchLabels"] = doc["spec"]["template"]["metadata"]["labels"] = {"app": name}
    doc["spec"]["template"]["spec"]["containers"][0]["args"].append("--time-scale=20")
    return doc


async def served_by(url: str) -> str:
    """The pod serving one request on a new connection (the proxy balances connections, not requests)."""
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(f"{url}/v1/completions", json={"model": MODEL, "prompt": "hi", "max_tokens": 2})
        assert response.status_code == 200, response.text
        return response.headers["x-inference-pod"]


async def test_cluster_ip_and_load_balancer_address_forward_to_ready_pods(tmp_path: Path, repo_root: Path) -> None:
    cluster_ip = random_loopback_block(1, 9, rng=random.Random())[0]
    lb_pool = str(ipaddress.ip_network(f"{random_loopback_block(1, 9, rng=random.Random())[0]}/24", strict=False))
    port = free_port(cluster_ip)
    async with running_cluster(tmp_path) as (_, _, client):
        proxy = ServiceProxy(client, ServiceProxyOptions(load_balancer_pool=lb_pool, state_file=tmp_path / "lb.json"))
        await proxy.start()
        try:
            await client.create(kinds.DEPLOYMENTS.path("default"), sim_deployment(repo_root, "proxied", 2))
            await client.create(kinds.SERVICES.path("default"), {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "proxied"},
                "spec": {"type": "LoadBalancer", "clusterIP": cluster_ip, "selector": {"app": "proxied"},
                         "ports": [{"name": "http", "port": port, "targetPort": "http"}]}})

            async def lb_ip() -> str | None:
                svc = await client.get(kinds.SERVICES.path("default", "proxied")) or {}
                ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                return str(ingress[0]["ip"]) if ingress else None

            async def lb_ip_gone() -> bool:
                return await lb_ip() is None

            address = await async_wait_until(lb_ip, 10, interval=0.1, what="the load-balancer ingress")
            assert ipaddress.ip_address(address) in ipaddress.ip_network(lb_pool)
            await async_wait_until(lambda: len(proxy.backends_of(cluster_ip, port)) == 2, 40, interval=0.2,
                                   what="two ready backends")
            for base in (f"http://{cluster_ip}:{port}", f"http://{address}:{port}"):
                pods = {await served_by(base) for _ in range(4)}
                assert len(pods) == 2 and all(p.startswith("proxied-") for p in pods), pods

            # scale down: the stopped pod is no longer a backend
            await client.merge_patch(kinds.DEPLOYMENTS.path("default", "proxied", "scale"), {"spec": {"replicas": 1}})
            await async_wait_until(lambda: len(proxy.backends_of(cluster_ip, port)) == 1, 20, interval=0.2,
                                   what="one backend")
            assert len({await served_by(f"http://{address}:{port}") for _ in range(3)}) == 1

            # a new proxy on the same state file: the same address, nothing rewritten
            await proxy.stop()
            proxy = ServiceProxy(client, ServiceProxyOptions(load_balancer_pool=lb_pool,
                                                             state_file=tmp_path / "lb.json"))
            await proxy.start()
            await proxy.wait_synced()
            assert proxy.lb_addresses.address_of("default/proxied") == address
            assert len({await served_by(f"http://{address}:{port}") for _ in range(2)}) == 1

            # no longer a LoadBalancer: the ingress is cleared, the cluster IP still answers
            await client.merge_patch(kinds.SERVICES.path("default", "proxied"), {"spec": {"type": "ClusterIP"}})
            await async_wait_until(lambda: lb_ip_gone(), 10, interval=0.1, what="the ingress cleared")
            await async_wait_until(lambda: (address, port) not in proxy.listeners, 10, interval=0.1,
                                   what="no listener on the load-balancer address")
            assert (await served_by(f"http://{cluster_ip}:{port}")).startswith("proxied-")

            # the Service deleted: nothing listens, the address is free again
            await client.delete(kinds.SERVICES.path("default", "proxied"))
            await async_wait_until(lambda: not proxy.listeners, 10, interval=0.1, what="no listener")
            for host in (cluster_ip, address):
                with pytest.raises(OSError):
                    await asyncio.open_connection(host, port)
            assert proxy.lb_addresses.holders() == []
        finally:
            await proxy.stop()
