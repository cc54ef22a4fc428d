"""RBAC mode with the local runtime: each pod reaches the API server with a token of its own
ServiceAccount, so the inferencepool chart's least-privilege Role is put to the test.

`helm install` (the real helm) of charts/inferencepool against an API server that enforces
RBAC gives an EPP pod that becomes Ready: the chart's Role is enough for the EPP to read its
pool, objectives and pods. With the chart's RoleBinding deleted, a new EPP pod logs the
Forbidden answers of the API server and does not become Ready; recreating the binding makes
it Ready. Also: a pod without serviceAccountName gets the namespace's `default` account
(created on demand), and `automountServiceAccountToken: false` gives a pod no credentials.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from infergate.apiserver.runtime import KubeClient, LocalRuntime, resource_path

from ..support.clitool import CliTool
from .conftest import Cluster, private_pod_cidr, running_cluster
from .test_runtime_e2e import is_ready, sim_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("runtime-rbac")]
LOOP = pytest.mark.asyncio(loop_scope="module")
POOL_CHART = Path(__file__).resolve().parents[2] / "charts" / "inferencepool"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rbac_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    from infergate.api import crds
    from infergate.up.cluster import install_crds

    async with running_cluster(tmp_path_factory.mktemp("runtime-rbac"), authorization_mode="RBAC",
                               service_account_tokens=True) as (api, runtime, client):
        await install_crds(client, crds.generate("ga"))
        yield api, runtime, client


async def new_namespace(client: KubeClient) -> str:
    name = f"rb-{uuid.uuid4().hex[:8]}"
    await client.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


async def pods(client: KubeClient, namespace: str, selector: str) -> list[dict[str, Any]]:
    listing = await client.list(resource_path("v1", "pods", namespace), label_selector=selector)
    return list(listing.get("items") or [])


async def wait_ready_pod(client: KubeClient, namespace: str, selector: str, timeout: float = 60.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    found: list[dict[str, Any]] = []
    while loop.time() < deadline:
        found = await pods(client, namespace, selector)
        if len(found) == 1 and is_ready(found[0]):
            return found[0]
        await asyncio.sleep(0.25)
    raise AssertionError(f"no single Ready pod {selector} in {namespace}: "
                         f"{[(p['metadata']['name'], p.get('status')) for p in found]}")


def token_subject(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])


def process_env(runtime: LocalRuntime, namespace: str, name: str) -> dict[str, str]:
    local = runtime.pods[f"{namespace}/{name}"]
    assert local.process is not None and local.process.state.pid
    raw = Path(f"/proc/{local.process.state.pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


async def sim_in(client: KubeClient, repo_root: Path, namespace: str, name: str,
                 **pod_spec: Any) -> None:
    doc = sim_deployment(repo_root, name, 1)
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["template"]["spec"].update(pod_spec)
    await client.create(resource_path("apps/v1", "deployments", namespace), doc)


@LOOP
async def test_helm_installed_epp_is_ready_with_the_charts_role_and_not_without_it(
        rbac_cluster: Cluster, repo_root: Path, helm_bin: str, kubectl_bin: str, tmp_path: Path) -> None:
    api, runtime, client = rbac_cluster
    namespace = await new_namespace(client)
    await sim_in(client, repo_root, namespace, "vllm-llama3-8b-instruct")
    helm = CliTool(helm_bin, api.kubeconfig_path, tmp_path / "home")
    kubectl = CliTool(kubectl_bin, api.kubeconfig_path, tmp_path / "home")
    release = "pool"
    installed = await asyncio.to_thread(
        helm, "install", release, str(POOL_CHART), "-n", namespace,
        "--set", "inferencePool.modelServers.matchLabels.app=vllm-llama3-8b-instruct", timeout=120)
    assert "STATUS: deployed" in installed.stdout
    selector = f"inferencepool={release}-epp"

    epp = await wait_ready_pod(client, namespace, selector, timeout=90)
    name = epp["metadata"]["name"]
    # its credentials are its own ServiceAccount's, not the admin's
    volume = runtime.options.state_dir / "volumes" / namespace / name
    token = (volume / "serviceaccount" / "token").read_text()
    assert token_subject(token) == f"system:serviceaccount:{namespace}:{release}-epp"
    assert token != api.token
    env = process_env(runtime, namespace, name)
    assert env["KUBECONFIG"] == str(volume / "kubeconfig") and api.token not in (volume / "kubeconfig").read_text()
    assert env["INFERGATE_SERVICEACCOUNT_DIR"] == str(volume / "serviceaccount")
    can_i = await asyncio.to_thread(kubectl, "auth", "can-i", "watch", "pods", "-n", namespace,
                                    f"--as=system:serviceaccount:{namespace}:{release}-epp")
    assert can_i.stdout.strip() == "yes"

    # without the RoleBinding, a new EPP pod is denied: Forbidden in its log, never Ready
    await asyncio.to_thread(kubectl, "delete", "rolebinding", f"{release}-epp", "-n", namespace)
    await asyncio.to_thread(kubectl, "delete", "pod", name, "-n", namespace, "--wait=false")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    log = ""
    replacement: dict[str, Any] | None = None
    while loop.time() < deadline:
        fresh = [p for p in await pods(client, namespace, selector) if p["metadata"]["name"] != name]
        if fresh:
            replacement = fresh[0]
            path = runtime.log_path(namespace, replacement["metadata"]["name"])
            log = path.read_text() if path is not None and path.exists() else ""
            if "Forbidden" in log:
                break
        await asyncio.sleep(0.25)
    assert replacement is not None, "no replacement EPP pod"
    assert "Forbidden" in log and f"system:serviceaccount:{namespace}:{release}-epp" in log, log[-2000:]
    await asyncio.sleep(3.0)  # several retries (1s apart) later it is still not Ready
    (current,) = [p for p in await pods(client, namespace, selector) if p["metadata"]["name"] != name]
    assert current["metadata"]["name"] == replacement["metadata"]["name"] and not is_ready(current)

    # the chart's binding back (helm upgrade re-creates it): the same pod becomes Ready
    await asyncio.to_thread(helm, "upgrade", release, str(POOL_CHART), "-n", namespace, "--reuse-values",
                            timeout=120)
    ready = await wait_ready_pod(client, namespace, selector, timeout=60)
    assert ready["metadata"]["name"] == replacement["metadata"]["name"]

    await asyncio.to_thread(helm, "uninstall", release, "-n", namespace, timeout=120)


@LOOP
async def test_default_service_account_and_no_automount(rbac_cluster: Cluster, repo_root: Path) -> None:
    api, runtime, client = rbac_cluster
    namespace = await new_namespace(client)
    assert await client.get(resource_path("v1", "serviceaccounts", namespace, "default")) is None
    await sim_in(client, repo_root, namespace, "sim-default")
    pod = await wait_ready_pod(client, namespace, "app=sim-default", timeout=40)
    assert await client.get(resource_path("v1", "serviceaccounts", namespace, "default")) is not None
    volume = runtime.options.state_dir / "volumes" / namespace / pod["metadata"]["name"]
    first = (volume / "serviceaccount" / "token").read_text()
    assert token_subject(first) == f"system:serviceaccount:{namespace}:default"
    # renewal (due at 80% of the lifetime): made due now, a new token replaces the old one
    runtime.pods[f"{namespace}/{pod['metadata']['name']}"].token_renew_at = 1.0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline and (volume / "serviceaccount" / "token").read_text() == first:
        await asyncio.sleep(0.2)
    renewed = (volume / "serviceaccount" / "token").read_text()
    assert renewed != first and token_subject(renewed) == token_subject(first)
    assert runtime.pods[f"{namespace}/{pod['metadata']['name']}"].token_renew_at > time.time() + 600

    await sim_in(client, repo_root, namespace, "sim-nomount", automountServiceAccountToken=False)
    pod = await wait_ready_pod(client, namespace, "app=sim-nomount", timeout=40)
    volume = runtime.options.state_dir / "volumes" / namespace / pod["metadata"]["name"]
    assert not (volume / "serviceaccount" / "token").exists()
    env = process_env(runtime, namespace, pod["metadata"]["name"])
    assert "INFERGATE_SERVICEACCOUNT_DIR" not in env and "KUBERNETES_SERVICE_HOST" not in env
    assert not Path(env["KUBECONFIG"]).exists()
    assert all(api.token not in value for value in env.values())

    # a ServiceAccount that does not exist: the pod is not started, and says why
    await sim_in(client, repo_root, namespace, "sim-nosa", serviceAccountName="missing")
    deadline = loop.time() + 20
    waiting: dict[str, Any] = {}
    while loop.time() < deadline:
        found = await pods(client, namespace, "app=sim-nosa")
        statuses = (found[0].get("status") or {}).get("containerStatuses") or [] if found else []
        waiting = (statuses[0].get("state") or {}).get("waiting") or {} if statuses else {}
        if waiting.get("reason") == "CreateContainerConfigError":
            break
        await asyncio.sleep(0.25)
    assert waiting.get("reason") == "CreateContainerConfigError"
    assert 'serviceaccount "missing" not found' in waiting.get("message", "")
    for name in ("sim-default", "sim-nomount", "sim-nosa"):
        await client.delete(resource_path("apps/v1", "deployments", namespace, name))


def test_infergate_up_passes_the_authorization_mode_through(tmp_path: Path, kubectl_bin: str,
                                                            repo_root: Path) -> None:
    """`infergate up --background --authorization-mode RBAC`: the API server enforces RBAC and a
    pod of the local runtime runs with its namespace's `default` ServiceAccount token."""
    import os
    import signal
    import subprocess
    import sys

    state = tmp_path / "up"
    pods_cidr, pool = private_pod_cidr(), private_pod_cidr(80)
    started = subprocess.run(
        [sys.executable, "-m", "infergate", "up", "--background", "--state-dir", str(state), "--port", "0",
         "--pod-cidr", pods_cidr, "--address-pool", pool, "--authorization-mode", "RBAC"],
        capture_output=True, text=True, timeout=150)
    assert started.returncode == 0, started.stderr
    pid = int((state / "up.pid").read_text())
    kc = CliTool(kubectl_bin, state / "kubeconfig", tmp_path / "home")
    try:
        kc("create", "serviceaccount", "probe")
        token = kc("create", "token", "probe").stdout.strip()
        denied = kc("--token", token, "get", "pods", check=False)
        assert 'User "system:serviceaccount:default:probe" cannot list resource "pods"' in denied.stderr
        doc = sim_deployment(repo_root, "sim-up", 1)
        kc("apply", "-f", "-", input=json.dumps(doc))
        deadline = time.monotonic() + 40
        token_file: Path | None = None
        while time.monotonic() < deadline:
            found = list((state / "runtime" / "volumes" / "default").glob("sim-up-*/serviceaccount/token"))
            if found:
                token_file = found[0]
                break
            time.sleep(0.25)
        assert token_file is not None, "no service-account token for the sim-up pod"
        assert token_subject(token_file.read_text()) == "system:serviceaccount:default:default"
        kc("delete", "deployment", "sim-up")
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and (state / "up.pid").exists() and Path(f"/proc/{pid}").exists():
            time.sleep(0.25)
