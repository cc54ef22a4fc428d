"""The local runtime against the embedded API server with real `infergate sim` processes.

A simulator Deployment becomes live pods (own loopback IPs, Ready from the readiness probe,
answering as their pod names), scales up and down, restarts a crashed process, and leaves
nothing behind when deleted. Other Deployments stay stored objects.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from infergate.apiserver import EmbeddedAPIServer
from infergate.apiserver.runtime import KubeClient, LocalRuntime, resource_path
from infergate.util.procs import pid_alive

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("runtime-e2e")]
LOOP = pytest.mark.asyncio(loop_scope="module")
Cluster = tuple[EmbeddedAPIServer, LocalRuntime, KubeClient]
DEPLOY = resource_path("apps/v1", "deployments", "default")


def sim_deployment(repo_root: Path, name: str, replicas: int) -> dict[str, Any]:
    doc = yaml.safe_load((repo_root / "examples" / "sim-deployment.yaml").read_text())
    doc = copy.deepcopy(doc)
    doc["metadata"]["name"] = name
    doc["spec"]["replicas"] = replicas
    labels = {"app": name}
    doc["spec"]["selector"]["matchLabels"] = labels
    doc["spec"]["template"]["metadata"]["labels"] = labels
    doc["spec"]["template"]["spec"]["containers"][0]["args"].append("--time-scale=20")
    return doc


async def pods_of(client: KubeClient, app: str) -> list[dict[str, Any]]:
    listing = await client.list(resource_path("v1", "pods", "default"), label_selector=f"app={app}")
    return list(listing.get("items") or [])


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


async def wait_pods(client: KubeClient, app: str, count: int, timeout: float = 40.0,
                    ready: bool = True) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout
    pods: list[dict[str, Any]] = []
    while asyncio.get_running_loop().time() < deadline:
        pods = await pods_of(client, app)
        if len(pods) == count and (not ready or all(is_ready(p) for p in pods)):
            return pods
        await asyncio.sleep(0.25)
    states = [(p["metadata"]["name"], (p.get("status") or {}).get("containerStatuses")) for p in pods]
    raise AssertionError(f"wanted {count} ready={ready} pods of {app}, have {states}")


async def wait_deployment(client: KubeClient, name: str, ready: int, timeout: float = 20.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    obj: dict[str, Any] | None = None
    while asyncio.get_running_loop().time() < deadline:
        obj = await client.get(f"{DEPLOY}/{name}")
        status = (obj or {}).get("status") or {}
        if status.get("readyReplicas", 0) == ready and status.get("replicas") == ready:
            return obj or {}
        await asyncio.sleep(0.25)
    raise AssertionError(f"deployment {name}: status {(obj or {}).get('status')}")


async def pod_answers(ip: str) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.post(f"http://{ip}:8000/v1/completions",
                                   json={"model": "meta-llama/Llama-3.1-8B-Instruct", "prompt": "hi", "max_tokens": 3})
        assert response.status_code == 200, response.text
        return response.headers["x-inference-pod"]


async def log_text(client: KubeClient, path: str) -> str:
    async with client.session.get(path) as response:
        assert response.status == 200, await response.text()
        return await response.text()


@LOOP
async def test_deployment_becomes_live_pods_then_scales_and_is_deleted(cluster: Cluster, repo_root: Path) -> None:
    _, runtime, client = cluster
    await client.create(DEPLOY, sim_deployment(repo_root, "sim-a", 2))
    pods = await wait_pods(client, "sim-a", 2)
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 2
    for pod in pods:
        meta, status = pod["metadata"], pod["status"]
        assert meta["ownerReferences"][0]["kind"] == "ReplicaSet"
        assert meta["name"].startswith(meta["ownerReferences"][0]["name"] + "-")
        assert meta["labels"]["pod-template-hash"] and status["phase"] == "Running"
        assert status["containerStatuses"][0]["ready"] is True
        # POD_NAME reached the process (x-inference-pod), and it listens on its own pod IP
        assert await pod_answers(status["podIP"]) == meta["name"]
    rs_name = pods[0]["metadata"]["ownerReferences"][0]["name"]
    rs = await client.get(resource_path("apps/v1", "replicasets", "default", rs_name))
    assert rs is not None and rs["metadata"]["ownerReferences"][0]["name"] == "sim-a"
    deployment = await wait_deployment(client, "sim-a", 2)
    conditions = {c["type"]: c["status"] for c in deployment["status"]["conditions"]}
    assert conditions["Available"] == "True"
    assert deployment["status"]["observedGeneration"] == deployment["metadata"]["generation"]

    # scale up through the scale subresource (what `kubectl scale` uses)
    await client.merge_patch(f"{DEPLOY}/sim-a/scale", {"spec": {"replicas": 3}})
    pods = await wait_pods(client, "sim-a", 3)
    await wait_deployment(client, "sim-a", 3)
    pids = {p.name: p.process.state.pid for p in runtime.pods_of("default", "sim-a") if p.process}
    assert len(pids) == 3 and all(pid is not None for pid in pids.values())

    # scale down: two processes stop, their addresses stop answering
    await client.merge_patch(f"{DEPLOY}/sim-a", {"spec": {"replicas": 1}})
    remaining = await wait_pods(client, "sim-a", 1)
    await wait_deployment(client, "sim-a", 1)
    gone = [p for p in pods if p["metadata"]["name"] != remaining[0]["metadata"]["name"]]
    for pod in gone:
        pid = pids[pod["metadata"]["name"]]
        assert pid is not None and not pid_alive(pid)
        with pytest.raises(httpx.TransportError):
            await pod_answers(pod["status"]["podIP"])

    # delete: no pods, no ReplicaSet, no process
    last_pid = pids[remaining[0]["metadata"]["name"]]
    await client.delete(f"{DEPLOY}/sim-a")
    await wait_pods(client, "sim-a", 0, ready=False)
    for _ in range(40):
        if not pid_alive(last_pid or 0) and await client.get(
                resource_path("apps/v1", "replicasets", "default", rs_name)) is None:
            break
        await asyncio.sleep(0.25)
    assert last_pid is not None and not pid_alive(last_pid)
    assert await client.get(resource_path("apps/v1", "replicasets", "default", rs_name)) is None
    assert runtime.pods_of("default", "sim-a") == []


@LOOP
async def test_crashed_process_restarts_and_deleted_pod_is_replaced(cluster: Cluster, repo_root: Path) -> None:
    _, runtime, client = cluster
    await client.create(DEPLOY, sim_deployment(repo_root, "sim-b", 1))
    (pod,) = await wait_pods(client, "sim-b", 1)
    (local,) = runtime.pods_of("default", "sim-b")
    assert local.process is not None
    first_pid = local.process.state.pid
    local.process.kill()
    deadline = asyncio.get_running_loop().time() + 30
    restarted: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        (restarted,) = await pods_of(client, "sim-b")
        cs = restarted["status"]["containerStatuses"][0]
        if cs["restartCount"] >= 1 and is_ready(restarted):
            break
        await asyncio.sleep(0.2)
    cs = restarted["status"]["containerStatuses"][0]
    assert cs["restartCount"] >= 1 and is_ready(restarted), cs
    assert cs["lastState"]["terminated"]["exitCode"] == 137  # SIGKILL, as a container runtime reports it
    assert restarted["metadata"]["name"] == pod["metadata"]["name"]
    assert restarted["status"]["podIP"] == pod["status"]["podIP"]  # same pod, same address
    assert local.process.state.pid != first_pid
    assert await pod_answers(pod["status"]["podIP"]) == pod["metadata"]["name"]
    # `kubectl logs` / `--previous`: the current run's and the crashed run's output
    logs = resource_path("v1", "pods", "default", pod["metadata"]["name"], "log")
    current = await log_text(client, logs)
    previous = await log_text(client, logs + "?previous=true")
    ready_line = f"ready {pod['status']['podIP']}:8000"
    assert current.count(ready_line) == 1 and previous.count(ready_line) == 1, (current, previous)
    assert "infergate-runtime" not in current + previous
    assert (await log_text(client, logs + "?tailLines=1")).strip() == current.strip().splitlines()[-1]

    # `kubectl delete pod`: the process stops, a new pod replaces it
    await client.delete(resource_path("v1", "pods", "default", pod["metadata"]["name"]))
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        pods = await pods_of(client, "sim-b")
        if len(pods) == 1 and pods[0]["metadata"]["name"] != pod["metadata"]["name"] and is_ready(pods[0]):
            break
        await asyncio.sleep(0.2)
    (replacement,) = await pods_of(client, "sim-b")
    assert replacement["metadata"]["name"] != pod["metadata"]["name"] and is_ready(replacement)
    assert await pod_answers(replacement["status"]["podIP"]) == replacement["metadata"]["name"]
    await client.delete(f"{DEPLOY}/sim-b")
    await wait_pods(client, "sim-b", 0, ready=False)


@LOOP
async def test_other_deployments_stay_stored_objects(cluster: Cluster) -> None:
    _, runtime, client = cluster
    other = {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "vllm-real", "labels": {"app": "vllm-real"}},
             "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "vllm-real"}},
                      "template": {"metadata": {"labels": {"app": "vllm-real"}},
                                   "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.10.0",
                                                            "args": ["--model", "x"]}]}}}}
    await client.create(DEPLOY, other)
    await asyncio.sleep(runtime.options.resync_s + 0.5)  # more than a resync period (1 s here: 2.5 s waited 2)
    assert await pods_of(client, "vllm-real") == []
    assert runtime.pods_of("default", "vllm-real") == []
    stored = await client.get(f"{DEPLOY}/vllm-real")
    assert stored is not None and not (stored.get("status") or {}).get("readyReplicas")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stored-only"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    await client.create(resource_path("v1", "pods", "default"), pod)
    async with client.session.get(resource_path("v1", "pods", "default", "stored-only", "log")) as response:
        assert response.status == 400 and "not run by the local runtime" in await response.text()
    await client.delete(resource_path("v1", "pods", "default", "stored-only"))
    await client.delete(f"{DEPLOY}/vllm-real")


@LOOP
async def test_template_change_rolls_out_new_pods_before_removing_old(cluster: Cluster, repo_root: Path) -> None:
    client = cluster[2]
    await client.create(DEPLOY, sim_deployment(repo_root, "sim-c", 1))
    (first,) = await wait_pods(client, "sim-c", 1)
    old_hash = first["metadata"]["labels"]["pod-template-hash"]
    deployment = await client.get(f"{DEPLOY}/sim-c")
    assert deployment is not None
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"] + ["--seed=7"]
    # Follow the Pods through a watch (every change the API server records, in order), so the
    # check does not depend on polling fast enough to see the overlap.
    listing = await client.list(resource_path("v1", "pods", "default"))
    ready_now: dict[str, bool] = {p["metadata"]["name"]: is_ready(p) for p in listing["items"]
                                  if p["metadata"]["name"].startswith("sim-c-")}
    latest: dict[str, dict[str, Any]] = {p["metadata"]["name"]: p for p in listing["items"]
                                         if p["metadata"]["name"].startswith("sim-c-")}
    ready_counts: list[int] = []
    new: dict[str, Any] | None = None

    async def follow() -> None:
        nonlocal new
        path = resource_path("v1", "pods", "default")
        async for event in client.watch(path, listing["metadata"]["resourceVersion"], timeout_seconds=40):
            pod = event.get("object") or {}
            name = (pod.get("metadata") or {}).get("name", "")
            if event.get("type") not in ("ADDED", "MODIFIED", "DELETED") or not name.startswith("sim-c-"):
                continue
            if event["type"] == "DELETED" or pod["metadata"].get("deletionTimestamp"):
                ready_now.pop(name, None)
                latest.pop(name, None)
            else:
                ready_now[name] = is_ready(pod)
                latest[name] = pod
            ready_counts.append(sum(ready_now.values()))
            if len(latest) == 1:
                (only,) = latest.values()
                if only["metadata"]["labels"]["pod-template-hash"] != old_hash and is_ready(only):
                    new = only
                    return

    watcher = asyncio.create_task(follow())
    await asyncio.sleep(0.2)  # the watch is open before the change
    await client.merge_patch(f"{DEPLOY}/sim-c", {"spec": {"template": {"spec": {"containers": [
        {**deployment["spec"]["template"]["spec"]["containers"][0], "args": args}]}}}})
    await asyncio.wait_for(watcher, 45)
    assert new is not None
    assert new["metadata"]["labels"]["pod-template-hash"] != old_hash and is_ready(new)
    assert min(ready_counts) >= 1, ready_counts  # never without a Ready pod during the rollout
    assert max(ready_counts) == 2, ready_counts  # the new pod was Ready (in the API) before the old one went
    assert await pod_answers(new["status"]["podIP"]) == new["metadata"]["name"]
    for _ in range(40):  # the old ReplicaSet goes too
        listing = await client.list(resource_path("apps/v1", "replicasets", "default"))
        names = {r["metadata"]["name"] for r in listing["items"] if r["metadata"]["name"].startswith("sim-c-")}
        if names == {f"sim-c-{new['metadata']['labels']['pod-template-hash']}"}:
            break
        await asyncio.sleep(0.25)
    assert names == {f"sim-c-{new['metadata']['labels']['pod-template-hash']}"}
    await client.delete(f"{DEPLOY}/sim-c")
    await wait_pods(client, "sim-c", 0, ready=False)


@LOOP
async def test_deleting_one_deployment_leaves_a_similarly_named_one_alone(cluster: Cluster, repo_root: Path) -> None:
    client = cluster[2]
    await client.create(DEPLOY, sim_deployment(repo_root, "sim-d", 1))
    await client.create(DEPLOY, sim_deployment(repo_root, "sim-d-epp", 1))
    (keep,) = await wait_pods(client, "sim-d-epp", 1)
    await wait_pods(client, "sim-d", 1)
    await client.delete(f"{DEPLOY}/sim-d")
    await wait_pods(client, "sim-d", 0, ready=False)
    await asyncio.sleep(1.5)
    (still,) = await wait_pods(client, "sim-d-epp", 1)
    assert still["metadata"]["uid"] == keep["metadata"]["uid"]
    rs = keep["metadata"]["ownerReferences"][0]["name"]
    assert await client.get(resource_path("apps/v1", "replicasets", "default", rs)) is not None
    await client.delete(f"{DEPLOY}/sim-d-epp")
    await wait_pods(client, "sim-d-epp", 0, ready=False)


@LOOP
async def test_epp_reaches_the_api_server_through_in_cluster_config(cluster: Cluster) -> None:
    """An EPP pod whose KUBECONFIG points nowhere still reads its pool: the runtime provides the
    service-account token and CA the in-cluster configuration reads, and KUBERNETES_SERVICE_*.
    Its readiness probe (grpc.health.v1, SERVING once the pool is known) proves it."""
    from infergate.api import crds
    from infergate.up.cluster import install_crds

    client = cluster[2]
    await install_crds(client, crds.generate("ga"))
    pool = {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
            "metadata": {"name": "pool-ic", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "nothing"}}, "targetPorts": [{"number": 8000}],
                     "endpointPickerRef": {"name": "pool-ic-epp", "port": {"number": 9002}}}}
    await client.create(resource_path("inference.networking.k8s.io/v1", "inferencepools", "default"), pool)
    labels = {"app": "epp-ic"}
    epp = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "epp-ic", "labels": labels},
           "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
               "metadata": {"labels": labels},
               "spec": {"containers": [{
                   "name": "epp", "image": "ghcr.io/infergate/infergate:test",
                   "args": ["epp", "--pool-name=pool-ic", "--pool-namespace=default"],
                   "env": [{"name": "KUBECONFIG", "value": "/nonexistent/kubeconfig"}],
                   "readinessProbe": {"grpc": {"port": 9003, "service": "inference-extension"}}}]}}}}
    await client.create(DEPLOY, epp)
    try:
        (pod,) = await wait_pods(client, "epp-ic", 1, timeout=60)
        async with httpx.AsyncClient(timeout=5) as http:  # it listens on its pod IP (INFERGATE_EPP_HOST)
            metrics = await http.get(f"http://{pod['status']['podIP']}:9090/metrics")
        assert metrics.status_code == 200
    finally:
        await client.delete(f"{DEPLOY}/epp-ic")
    await wait_pods(client, "epp-ic", 0, ready=False)


@LOOP
async def test_missing_configmap_key_then_created(cluster: Cluster, repo_root: Path) -> None:
    """A container env from a missing ConfigMap: CreateContainerConfigError with the reason; once
    the ConfigMap exists the pod starts (its value reaches the process: the x-inference-pod name)."""
    client = cluster[2]
    doc = sim_deployment(repo_root, "sim-e", 1)
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] != "POD_NAME"] + [
        {"name": "POD_NAME", "valueFrom": {"configMapKeyRef": {"name": "sim-e-config", "key": "pod-name"}}}]
    await client.create(DEPLOY, doc)
    deadline = asyncio.get_running_loop().time() + 20
    waiting: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        pods = await pods_of(client, "sim-e")
        statuses = (pods[0].get("status") or {}).get("containerStatuses") if pods else None
        if statuses:
            waiting = statuses[0]["state"].get("waiting") or {}
            if waiting:
                break
        await asyncio.sleep(0.2)
    assert waiting.get("reason") == "CreateContainerConfigError", waiting
    assert "ConfigMap 'sim-e-config' has no key 'pod-name'" in waiting["message"]
    await client.create(resource_path("v1", "configmaps", "default"), {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "sim-e-config"},
        "data": {"pod-name": "named-by-configmap"}})
    (pod,) = await wait_pods(client, "sim-e", 1, timeout=30)
    assert await pod_answers(pod["status"]["podIP"]) == "named-by-configmap"
    await client.delete(f"{DEPLOY}/sim-e")
    await wait_pods(client, "sim-e", 0, ready=False)


def two_container_deployment(name: str) -> dict[str, Any]:
    """A pod of two simulators: ``a`` on $(POD_IP):8000, ``b`` on 0.0.0.0:8001 (the pod IP locally)."""
    def sim(container: str, address: str, port: int) -> dict[str, Any]:
        return {"name": container, "image": "ghcr.io/infergate/infergate:latest", "command": ["infergate", "sim"],
                "args": [f"--address={address}", f"--port={port}", "--model=m", "--time-scale=20"],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "readinessProbe": {"httpGet": {"path": "/health", "port": port}, "periodSeconds": 1}}

    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"terminationGracePeriodSeconds": 3,
                                           "containers": [sim("a", "$(POD_IP)", 8000), sim("b", "0.0.0.0", 8001)]}}}}


@LOOP
async def test_a_pod_of_two_containers_runs_each_restarts_each_and_logs_each(cluster: Cluster) -> None:
    _, runtime, client = cluster
    await client.create(DEPLOY, two_container_deployment("duo"))
    (pod,) = await wait_pods(client, "duo", 1)
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    assert [(c["name"], c["ready"]) for c in pod["status"]["containerStatuses"]] == [("a", True), ("b", True)]
    async with httpx.AsyncClient(timeout=5) as http:  # both on the pod's address (b's 0.0.0.0 is the pod IP)
        for port in (8000, 8001):
            assert (await http.get(f"http://{ip}:{port}/health")).status_code == 200

    logs = resource_path("v1", "pods", "default", name, "log")
    assert f"ready {ip}:8000" in await log_text(client, logs + "?container=a")
    b_log = await log_text(client, logs + "?container=b")
    assert f"ready {ip}:8001" in b_log and f"{ip}:8000" not in b_log
    async with client.session.get(logs) as response:
        assert response.status == 400
        assert "a container name must be specified for pod " + name + ", choose one of: [a b]" in await response.text()
    async with client.session.get(logs + "?container=c") as response:
        assert response.status == 400 and f"container c is not valid for pod {name}" in await response.text()

    # one container crashes: only it restarts; the pod is Ready again once it is
    (local,) = runtime.pods_of("default", "duo")
    a, b = local.processes
    a_pid, b_pid = a.state.pid, b.state.pid
    b.kill()
    deadline = asyncio.get_running_loop().time() + 30
    statuses: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        (current,) = await pods_of(client, "duo")
        statuses = {c["name"]: c for c in current["status"]["containerStatuses"]}
        if statuses["b"]["restartCount"] >= 1 and is_ready(current):
            break
        await asyncio.sleep(0.2)
    assert statuses["b"]["restartCount"] >= 1 and statuses["b"]["lastState"]["terminated"]["exitCode"] == 137
    assert statuses["a"]["restartCount"] == 0 and "lastState" not in statuses["a"], statuses
    assert a.state.pid == a_pid and b.state.pid != b_pid
    assert f"ready {ip}:8001" in await log_text(client, logs + "?container=b&previous=true")

    pids = [pid for pid in (a_pid, b.state.pid) if pid]
    assert len(pids) == 2
    await client.delete(f"{DEPLOY}/duo")
    await wait_pods(client, "duo", 0, ready=False)
    for _ in range(40):  # the pod's processes stop once its object is gone
        if not any(pid_alive(pid) for pid in pids):
            break
        await asyncio.sleep(0.25)
    assert not any(pid_alive(pid) for pid in pids)


@LOOP
async def test_init_containers_run_to_completion_in_order_before_the_containers(cluster: Cluster) -> None:
    client = cluster[2]
    deployment = two_container_deployment("inits")
    spec = deployment["spec"]["template"]["spec"]
    spec["containers"] = spec["containers"][:1]
    spec["initContainers"] = [{"name": "first", "image": "ghcr.io/infergate/infergate:latest", "args": ["--version"]},
                              {"name": "second", "image": "ghcr.io/infergate/infergate:latest",
                               "command": ["infergate", "--version"]}]
    await client.create(DEPLOY, deployment)
    (pod,) = await wait_pods(client, "inits", 1)
    inits = pod["status"]["initContainerStatuses"]
    assert [(c["name"], c["state"]["terminated"]["reason"], c["restartCount"]) for c in inits] == [
        ("first", "Completed", 0), ("second", "Completed", 0)]
    assert inits[0]["state"]["terminated"]["finishedAt"] <= inits[1]["state"]["terminated"]["startedAt"]
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Initialized"] == "True"
    logs = resource_path("v1", "pods", "default", pod["metadata"]["name"], "log")
    assert "infergate, version" in await log_text(client, logs + "?container=second")
    assert "infergate, version" not in await log_text(client, logs)  # the only container: the default

    # an init container that fails is run again (restartCount), the containers never start
    spec["initContainers"][1]["command"] = ["infergate", "no-such-command"]
    await client.replace(f"{DEPLOY}/inits", {**deployment, "metadata": {
        **deployment["metadata"], "resourceVersion": (await client.get(f"{DEPLOY}/inits") or {})["metadata"][
            "resourceVersion"]}})
    deadline = asyncio.get_running_loop().time() + 30
    failing: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        pods = [p for p in await pods_of(client, "inits") if p["metadata"]["name"] != pod["metadata"]["name"]]
        statuses = pods[0]["status"].get("initContainerStatuses") if pods else None
        if statuses and statuses[1]["restartCount"] >= 1:
            failing = pods[0]
            break
        await asyncio.sleep(0.2)
    assert failing, "the new pod's failing init container was not restarted"
    status = failing["status"]
    assert status["phase"] == "Pending" and status["initContainerStatuses"][1]["lastState"]["terminated"][
        "exitCode"] == 2
    initialized = {c["type"]: c for c in status["conditions"]}["Initialized"]
    assert (initialized["status"], initialized["reason"], initialized["message"]) == (
        "False", "ContainersNotInitialized", "containers with incomplete status: [second]")
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    async with client.session.get(resource_path("v1", "pods", "default", failing["metadata"]["name"], "log")) as r:
        assert r.status == 200  # one container: no choice to make
    await client.delete(f"{DEPLOY}/inits")
    await wait_pods(client, "inits", 0, ready=False)


@LOOP
async def test_a_container_that_cannot_start_is_named_in_the_pod_status(cluster: Cluster) -> None:
    """An Envoy sidecar whose bootstrap is not mounted: that container waits
    CreateContainerConfigError with the reason; the pod starts none of its containers."""
    client = cluster[2]
    deployment = two_container_deployment("no-bootstrap")
    spec = deployment["spec"]["template"]["spec"]
    spec["containers"][1] = {"name": "envoy", "image": "ghcr.io/infergate/infergate:latest", "command": ["envoy"],
                             "args": ["-c", "/etc/envoy/envoy.yaml"]}
    await client.create(DEPLOY, deployment)
    deadline = asyncio.get_running_loop().time() + 20
    statuses: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        pods = await pods_of(client, "no-bootstrap")
        statuses = {c["name"]: c for c in (pods[0].get("status") or {}).get("containerStatuses") or []} if pods else {}
        if "envoy" in statuses:
            break
        await asyncio.sleep(0.2)
    assert statuses["envoy"]["state"]["waiting"]["reason"] == "CreateContainerConfigError", statuses
    assert statuses["envoy"]["state"]["waiting"]["message"] == (
        "containers[envoy]: Envoy configuration /etc/envoy/envoy.yaml: No such file or directory")
    assert statuses["a"]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    await client.delete(f"{DEPLOY}/no-bootstrap")
    await wait_pods(client, "no-bootstrap", 0, ready=False)
