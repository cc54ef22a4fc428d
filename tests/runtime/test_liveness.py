"""Liveness and startup probes in the local runtime, as the kubelet runs them.

Parsing: defaults, named ports, exec (not run, counts as passing), invalid probes rejected with
the field named (the pod shows ``CreateContainerConfigError``). With real `infergate sim` pods:
a hung process (SIGSTOP: it accepts connections and never answers) and an unhealthy one
(``/health`` 503 after ``POST /admin/replicas/0/restart`` on the admin port, with a long startup delay) are killed by their
liveness probe and restarted (``restartCount`` 1, ``lastState.terminated``), and become Ready
again; a startup probe that never succeeds restarts the container over and over and the pod is
never Ready; one that succeeds lets readiness run (and not before). The inferencepool chart's
EPP (its gRPC liveness probe, installed with the real helm) is not restarted by it, while the
same probe asking for an unknown gRPC service restarts it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import pytest_asyncio
import yaml

from infergate.apiserver.runtime import KubeClient, LocalRuntime, resource_path
from infergate.apiserver.runtime.probes import run_probe
from infergate.apiserver.runtime.spec import (
    PodIdentity,
    launch_spec,
    liveness_probe,
    readiness_probe,
    startup_probe,
)

from ..support.clitool import CliTool
from .conftest import Cluster, running_cluster
from .test_runtime_e2e import DEPLOY, is_ready, pod_answers, pods_of, sim_deployment

LOOP = pytest.mark.asyncio(loop_scope="module")
POOL_CHART = Path(__file__).resolve().parents[2] / "charts" / "inferencepool"


# -- parsing -------------------------------------------------------------------------------------

def container(**probes: Any) -> dict[str, Any]:
    return {"name": "vllm", "image": "ghcr.io/infergate/infergate:latest", "command": ["infergate", "sim"],
            "ports": [{"name": "http", "containerPort": 8000}, {"name": "grpc-health", "containerPort": 9003}],
            **probes}


def test_liveness_defaults_and_named_port() -> None:
    probe = liveness_probe(container(livenessProbe={"httpGet": {"path": "/health", "port": "http"}}))
    assert probe is not None
    assert (probe.kind, probe.port, probe.path) == ("http", 8000, "/health")
    assert (probe.initial_delay_s, probe.period_s, probe.timeout_s) == (0.0, 10.0, 1.0)
    assert (probe.success_threshold, probe.failure_threshold) == (1, 3)
    tcp = startup_probe(container(startupProbe={"tcpSocket": {"port": "grpc-health"}, "periodSeconds": 2,
                                                "failureThreshold": 30, "initialDelaySeconds": 1}))
    assert tcp is not None and (tcp.kind, tcp.port, tcp.period_s, tcp.failure_threshold, tcp.initial_delay_s) == (
        "tcp", 9003, 2.0, 30, 1.0)
    grpc = liveness_probe(container(livenessProbe={"grpc": {"port": 9003, "service": "inference-extension"},
                                                   "timeoutSeconds": 2}))
    assert grpc is not None and (grpc.kind, grpc.port, grpc.service, grpc.timeout_s) == (
        "grpc", 9003, "inference-extension", 2.0)
    assert liveness_probe(container()) is None and startup_probe(container()) is None
    # exec is not run locally: no probe, the process being up counts (as for readiness)
    assert liveness_probe(container(livenessProbe={"exec": {"command": ["true"]}})) is None


@pytest.mark.parametrize(("probe", "message"), [
    ({"httpGet": {"port": 8000}, "successThreshold": 2},
     "containers[vllm].livenessProbe.successThreshold: Invalid value: 2: must be 1"),
    ({"httpGet": {"port": "metrics"}}, "containers[vllm].livenessProbe.httpGet.port: no container port named 'metrics'"),
    ({"periodSeconds": 5}, "containers[vllm].livenessProbe: must specify exactly one handler type"),
    ({"httpGet": {"port": 8000}, "tcpSocket": {"port": 8000}},
     "containers[vllm].livenessProbe: must specify exactly one handler type"),
    ({"tcpSocket": {"port": 8000}, "failureThreshold": 0},
     "containers[vllm].livenessProbe.failureThreshold: Invalid value: 0: must be >= 1"),
    ({"tcpSocket": {"port": 8000}, "periodSeconds": 0},
     "containers[vllm].livenessProbe.periodSeconds: Invalid value: 0: must be > 0"),
])
def test_invalid_liveness_probes_are_rejected(probe: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        liveness_probe(container(livenessProbe=probe))
    assert str(info.value).startswith(message), str(info.value)


def test_invalid_startup_probe_is_rejected_and_readiness_parsing_is_unchanged() -> None:
    with pytest.raises(ValueError, match=r"containers\[vllm\]\.startupProbe\.successThreshold: .*must be 1"):
        startup_probe(container(startupProbe={"tcpSocket": {"port": 8000}, "successThreshold": 3}))
    # readiness keeps accepting successThreshold > 1 (it is valid there)
    ready = readiness_probe(container(readinessProbe={"httpGet": {"port": "http"}, "successThreshold": 3}))
    assert ready is not None and ready.success_threshold == 3


def test_launch_spec_carries_all_three_probes() -> None:
    spec = launch_spec({"spec": {"terminationGracePeriodSeconds": 7}}, container(
        readinessProbe={"httpGet": {"port": "http", "path": "/health"}},
        livenessProbe={"httpGet": {"port": "http", "path": "/health"}, "periodSeconds": 1},
        startupProbe={"tcpSocket": {"port": 8000}}), PodIdentity("p", "default", "127.0.0.2"), {})
    assert spec.probe is not None and spec.liveness is not None and spec.startup is not None
    assert (spec.liveness.period_s, spec.startup.kind, spec.grace_period_s) == (1.0, "tcp", 7.0)


# -- with real simulator processes ----------------------------------------------------------------

@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def probe_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    from infergate.api import crds
    from infergate.up.cluster import install_crds

    async with running_cluster(tmp_path_factory.mktemp("runtime-liveness")) as (api, runtime, client):
        await install_crds(client, crds.generate("ga"))
        yield api, runtime, client


def probed_sim(repo_root: Path, name: str, **probes: Any) -> dict[str, Any]:
    doc = sim_deployment(repo_root, name, 1)
    spec = doc["spec"]["template"]["spec"]
    spec["terminationGracePeriodSeconds"] = 1
    spec["containers"][0]["readinessProbe"]["periodSeconds"] = 1
    spec["containers"][0].update(probes)
    return doc


def status_of(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(((pod.get("status") or {}).get("containerStatuses") or [{}])[0])


async def one_pod(client: KubeClient, app: str) -> dict[str, Any] | None:
    found = await pods_of(client, app)
    return found[0] if len(found) == 1 else None


async def wait_for(client: KubeClient, app: str, check: Any, timeout: float, what: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pod: dict[str, Any] | None = None
    while loop.time() < deadline:
        pod = await one_pod(client, app)
        if pod is not None and check(pod):
            return pod
        await asyncio.sleep(0.2)
    raise AssertionError(f"{app}: {what} not within {timeout}s; status {(pod or {}).get('status')}")


def local_pid(runtime: LocalRuntime, pod: dict[str, Any]) -> int:
    local = runtime.pods[f"default/{pod['metadata']['name']}"]
    assert local.process is not None and local.process.state.pid
    return local.process.state.pid


def probe_tasks(name: str) -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == f"probes default/{name}" and not t.done()]


def restarted_and_ready(pod: dict[str, Any]) -> bool:
    return status_of(pod).get("restartCount") == 1 and is_ready(pod)


LIVENESS = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 1, "failureThreshold": 2,
            "timeoutSeconds": 1}
STARTED = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 1, "failureThreshold": 60}


@LOOP
@pytest.mark.e2e
@pytest.mark.xdist_group("runtime-liveness")
async def test_hung_process_is_killed_by_liveness_and_restarted(probe_cluster: Cluster, repo_root: Path) -> None:
    _, runtime, client = probe_cluster
    # a startupProbe, as a user would give a slow starter: liveness runs only once the process
    # answers (a loaded machine took more than LIVENESS's 2 s to start it: 15 restarts, never Ready)
    await client.create(DEPLOY, probed_sim(repo_root, "live-hang", livenessProbe=LIVENESS, startupProbe=STARTED))
    pod = await wait_for(client, "live-hang", is_ready, 40, "Ready")
    name = pod["metadata"]["name"]
    assert status_of(pod)["restartCount"] == 0 and status_of(pod)["started"] is True
    await asyncio.sleep(3.0)  # three healthy liveness periods: nothing happens
    pod = await wait_for(client, "live-hang", is_ready, 5, "still Ready")
    assert status_of(pod)["restartCount"] == 0
    first = local_pid(runtime, pod)
    os.killpg(first, signal.SIGSTOP)  # hung: connections are accepted, nothing answers (SIGTERM stays pending)
    stopped_at = time.monotonic()
    pod = await wait_for(client, "live-hang", restarted_and_ready, 30, "restarted and Ready")
    status = status_of(pod)
    terminated = status["lastState"]["terminated"]
    # SIGTERM cannot end a stopped process: SIGKILL after terminationGracePeriodSeconds (1 s)
    assert terminated["exitCode"] == 137 and terminated["reason"] == "Error", terminated
    assert status["state"]["running"]["startedAt"] and status["started"] is True
    assert pod["metadata"]["name"] == name  # the same pod, a new container
    second = local_pid(runtime, pod)
    assert second != first
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)
    # 2 failures x 1 s period (+1 s timeout each) + 1 s grace + start: well under 15 s
    assert time.monotonic() - stopped_at < 15
    assert await pod_answers(pod["status"]["podIP"]) == name
    await client.delete(f"{DEPLOY}/live-hang")
    await wait_gone(client, "live-hang")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10  # the pod's stop: SIGTERM, then at most its 1 s grace
    while probe_tasks(name) and loop.time() < deadline:
        await asyncio.sleep(0.1)
    assert probe_tasks(name) == []  # the probes stopped with the pod
    with pytest.raises(ProcessLookupError):
        os.kill(second, 0)


async def wait_gone(client: KubeClient, app: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if not await pods_of(client, app):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"pods of {app} still there")


@LOOP
@pytest.mark.e2e
@pytest.mark.xdist_group("runtime-liveness")
async def test_unhealthy_process_is_restarted_and_healthy_again(probe_cluster: Cluster, repo_root: Path) -> None:
    _, runtime, client = probe_cluster
    # a startupProbe, as for the hung process: a Python process on a loaded machine may need more
    # than the 2 s that LIVENESS allows to start listening (each restart too), and liveness runs
    # once it answers (an initialDelaySeconds of 5 did the same, waiting 5 s at each start)
    doc = probed_sim(repo_root, "live-sick", livenessProbe=LIVENESS, startupProbe=STARTED)
    # Fault injection is off by default and never on the serving port: its own port.
    doc["spec"]["template"]["spec"]["containers"][0]["args"] += ["--admin-port=8001", "--admin-address=$(POD_IP)"]
    await client.create(DEPLOY, doc)
    pod = await wait_for(client, "live-sick", is_ready, 40, "Ready")
    ip, first = pod["status"]["podIP"], local_pid(runtime, pod)
    async with httpx.AsyncClient(timeout=5) as http:
        answer = await http.post(f"http://{ip}:8001/admin/replicas/0/restart", json={"startup_delay_s": 600})
        assert answer.status_code == 200, answer.text
        for _ in range(50):  # the simulator restarts its engine a moment after answering
            health = await http.get(f"http://{ip}:8000/health")
            if health.status_code == 503:
                break
            await asyncio.sleep(0.05)
        assert health.status_code == 503  # unhealthy (for ten minutes), not dead
    pod = await wait_for(client, "live-sick", restarted_and_ready, 30, "restarted and Ready")
    terminated = status_of(pod)["lastState"]["terminated"]
    code = terminated["exitCode"]
    assert terminated["reason"] == ("Completed" if code == 0 else "Error") and terminated["finishedAt"]
    assert local_pid(runtime, pod) != first
    async with httpx.AsyncClient(timeout=5) as http:  # the new process is a fresh, healthy simulator
        assert (await http.get(f"http://{ip}:8000/health")).status_code == 200
    await client.delete(f"{DEPLOY}/live-sick")


@LOOP
@pytest.mark.e2e
@pytest.mark.xdist_group("runtime-liveness")
async def test_failing_startup_probe_restarts_and_pod_is_never_ready(probe_cluster: Cluster, repo_root: Path) -> None:
    _, _, client = probe_cluster
    startup = {"tcpSocket": {"port": 9}, "periodSeconds": 1, "failureThreshold": 2}  # nothing listens on 9
    await client.create(DEPLOY, probed_sim(repo_root, "start-never", startupProbe=startup,
                                           livenessProbe=LIVENESS))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 25
    seen_ready = False
    restarts = 0
    pod: dict[str, Any] | None = None
    while loop.time() < deadline and restarts < 3:
        pod = await one_pod(client, "start-never")
        if pod is not None:
            status = status_of(pod)
            seen_ready = seen_ready or is_ready(pod) or bool(status.get("ready"))
            assert status.get("started") in (False, None), status  # never started
            restarts = int(status.get("restartCount") or 0)
        await asyncio.sleep(0.1)
    assert pod is not None and restarts >= 3, (pod or {}).get("status")
    assert not seen_ready
    terminated = status_of(pod)["lastState"]["terminated"]
    assert terminated["reason"] == ("Completed" if terminated["exitCode"] == 0 else "Error")
    await client.delete(f"{DEPLOY}/start-never")


@LOOP
@pytest.mark.e2e
@pytest.mark.xdist_group("runtime-liveness")
async def test_succeeding_startup_probe_enables_readiness(probe_cluster: Cluster, repo_root: Path) -> None:
    _, runtime, client = probe_cluster
    startup = {"httpGet": {"path": "/health", "port": "http"}, "initialDelaySeconds": 3, "periodSeconds": 1,
               "failureThreshold": 30}
    await client.create(DEPLOY, probed_sim(repo_root, "start-ok", startupProbe=startup, livenessProbe=LIVENESS))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 40
    observed: list[tuple[float, bool, bool]] = []  # (time, started, ready) of the local process
    while loop.time() < deadline:
        local = [p for p in runtime.pods.values() if p.deployment == "start-ok"]
        if local and local[0].process is not None and local[0].process.state.pid:
            state = local[0].process.state
            observed.append((loop.time(), state.started, state.ready))
            if state.ready:
                break
        await asyncio.sleep(0.05)
    assert observed and observed[-1][2], observed[-5:]
    assert all(started or not ready for _, started, ready in observed)  # never Ready before started
    # the simulator answers /health within ~2 s; readiness waited for the startup probe's 3 s delay
    assert observed[-1][0] - observed[0][0] >= 2.5, (observed[0], observed[-1])
    pod = await wait_for(client, "start-ok", is_ready, 10, "Ready")
    status = status_of(pod)
    assert status["started"] is True and status["ready"] is True and status["restartCount"] == 0
    await client.delete(f"{DEPLOY}/start-ok")


@LOOP
@pytest.mark.e2e
@pytest.mark.xdist_group("runtime-liveness")
async def test_invalid_liveness_probe_is_a_config_error(probe_cluster: Cluster, repo_root: Path) -> None:
    _, _, client = probe_cluster
    probe = {**LIVENESS, "successThreshold": 2}
    await client.create(DEPLOY, probed_sim(repo_root, "live-bad", livenessProbe=probe))
    pod = await wait_for(client, "live-bad", lambda p: "waiting" in status_of(p).get("state", {}), 20, "waiting")
    waiting = status_of(pod)["state"]["waiting"]
    assert waiting["reason"] == "CreateContainerConfigError"
    assert "livenessProbe.successThreshold: Invalid value: 2: must be 1" in waiting["message"]
    await client.delete(f"{DEPLOY}/live-bad")


# -- the inferencepool chart's EPP ------------------------------------------------------------------

def chart_liveness(helm: CliTool) -> dict[str, Any]:
    rendered = helm("template", "pool", str(POOL_CHART), "--set",
                    "inferencePool.modelServers.matchLabels.app=vllm-llama3-8b-instruct").stdout
    for doc in yaml.safe_load_all(rendered):
        if doc and doc.get("kind") == "Deployment":
            return dict(doc["spec"]["template"]["spec"]["containers"][0]["livenessProbe"])
    raise AssertionError("no Deployment in the chart")


@LOOP
@pytest.mark.e2e
@pytest.mark.xdist_group("runtime-liveness")
async def test_chart_epp_is_not_restarted_by_its_liveness_probe(
        probe_cluster: Cluster, repo_root: Path, helm_bin: str, tmp_path: Path) -> None:
    api, runtime, client = probe_cluster
    await client.create(DEPLOY, sim_deployment(repo_root, "vllm-llama3-8b-instruct", 1))
    helm = CliTool(helm_bin, api.kubeconfig_path, tmp_path / "home")
    chart_probe = await asyncio.to_thread(chart_liveness, helm)
    assert chart_probe["grpc"] == {"port": 9003, "service": "liveness"}, chart_probe
    # the chart's probe (handler, initial delay, timeout), checked every second instead of every 10
    fast = {**chart_probe, "periodSeconds": 1, "failureThreshold": 2}
    release = "pool"
    installed = await asyncio.to_thread(
        helm, "install", release, str(POOL_CHART), "--set",
        "inferencePool.modelServers.matchLabels.app=vllm-llama3-8b-instruct",
        "--set-json", f"inferenceExtension.livenessProbe={json.dumps(fast)}", timeout=120)
    assert "STATUS: deployed" in installed.stdout
    app = f"inferencepool={release}-epp"

    async def epp() -> dict[str, Any] | None:
        listing = await client.list(resource_path("v1", "pods", "default"), label_selector=app)
        items = listing.get("items") or []
        return items[0] if len(items) == 1 else None

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    pod = None
    while loop.time() < deadline:
        pod = await epp()
        if pod is not None and is_ready(pod):
            break
        await asyncio.sleep(0.25)
    assert pod is not None and is_ready(pod), (pod or {}).get("status")
    local = runtime.pods[f"default/{pod['metadata']['name']}"]
    assert local.process is not None and local.process.spec.liveness is not None
    liveness = local.process.spec.liveness
    assert (liveness.kind, liveness.port, liveness.service, liveness.period_s) == (
        "grpc", 9003, "liveness", 1.0)
    await asyncio.sleep(max(liveness.initial_delay_s, 0) + 4)  # past the initial delay, several periods
    pod = await epp()
    assert pod is not None and is_ready(pod)
    assert status_of(pod)["restartCount"] == 0 and "lastState" not in status_of(pod), status_of(pod)
    async with aiohttp.ClientSession() as session:
        assert await run_probe(liveness, pod["status"]["podIP"], session) is True

    # control: the same probe on a port the EPP does not serve gRPC health on restarts the new pod
    # (from its start: the initial delay only postpones a restart that is certain here)
    wrong = {**fast, "grpc": {"port": 9004, "service": "inference-extension"}, "initialDelaySeconds": 0}
    await asyncio.to_thread(helm, "upgrade", release, str(POOL_CHART), "--reuse-values",
                            "--set-json", f"inferenceExtension.livenessProbe={json.dumps(wrong)}", timeout=120)
    deadline = loop.time() + 60
    restarted: list[dict[str, Any]] = []
    while loop.time() < deadline and not restarted:
        listing = await client.list(resource_path("v1", "pods", "default"), label_selector=app)
        restarted = [p for p in listing.get("items") or [] if int(status_of(p).get("restartCount") or 0) >= 1]
        await asyncio.sleep(0.25)
    assert restarted, "the EPP with a liveness probe on a dead port was never restarted"
    assert restarted[0]["metadata"]["name"] != pod["metadata"]["name"]
    await asyncio.to_thread(helm, "uninstall", release, timeout=120)
    await client.delete(f"{DEPLOY}/vllm-llama3-8b-instruct")

