"""The runtime stopping and starting again on the same API server and state: the pods stay
stored, marked not Ready (`RuntimeStopped`), and the next runtime runs them again under the
same names and addresses."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from infergate.apiserver import EmbeddedAPIServer
from infergate.apiserver.runtime import KubeClient, LocalRuntime, RuntimeOptions, resource_path

from .conftest import private_pod_cidr
from .test_runtime_e2e import DEPLOY, is_ready, pod_answers, pods_of, sim_deployment, wait_pods

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("runtime-e2e")]


async def test_stop_marks_pods_stopped_and_restart_adopts_them(tmp_path: Path, repo_root: Path) -> None:
    api = EmbeddedAPIServer(tmp_path / "api")
    await api.start()
    options = RuntimeOptions(kubeconfig=api.kubeconfig_path, state_dir=tmp_path / "runtime",
                             pod_cidr=private_pod_cidr(), resync_s=1.0)
    client = KubeClient.from_kubeconfig(api.kubeconfig_path)
    await client.open()
    runtime = LocalRuntime(options)
    second: LocalRuntime | None = None
    try:
        await runtime.start()
        await client.create(DEPLOY, sim_deployment(repo_root, "sim-r", 2))
        before = {p["metadata"]["name"]: p["status"]["podIP"] for p in await wait_pods(client, "sim-r", 2)}
        await runtime.stop()
        stopped: list[dict[str, Any]] = await pods_of(client, "sim-r")
        assert {p["metadata"]["name"] for p in stopped} == set(before)
        for pod in stopped:
            assert not is_ready(pod)
            assert pod["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "RuntimeStopped"}}
        second = LocalRuntime(options)
        await second.start()
        after = {p["metadata"]["name"]: p["status"]["podIP"] for p in await wait_pods(client, "sim-r", 2)}
        assert after == before
        for name, ip in after.items():
            assert await pod_answers(ip) == name
        deployment = await client.get(f"{DEPLOY}/sim-r")
        assert deployment is not None and deployment["status"]["readyReplicas"] == 2
        # a Deployment deleted while no runtime ran: the next one deletes its leftover pods
        await second.stop()
        second = None
        await client.delete(f"{DEPLOY}/sim-r")
        await asyncio.sleep(0.5)
        second = LocalRuntime(options)
        await second.start()
        await wait_pods(client, "sim-r", 0, ready=False)
        leftover = await client.list(resource_path("apps/v1", "replicasets", "default"), "app=sim-r")
        assert leftover["items"] == []
    finally:
        if second is not None:
            await second.stop()
        await runtime.stop()
        await client.close()
        await api.stop()
