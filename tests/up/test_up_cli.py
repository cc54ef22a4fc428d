"""`infergate up` as a user runs it: the real kubectl sees the GatewayClasses, a Gateway of the
source document's class gets Programmed with an address, a simulator Deployment gets a live
pod; Ctrl-C stops everything; a restart on the same state directory keeps the pod's name and
IP; --background returns once ready, and a SIGKILL of it leaves no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from infergate.util.net import free_port

from .conftest import private_cidr, processes_mentioning

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("up-cli")]
GKE_CLASS = "gke-l7-regional-external-managed"


def start_up(state: Path, pods: str, gateways: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "infergate", "up", "--state-dir", str(state), "--port", "0", "--pod-cidr", pods,
         "--address-pool", gateways, "--gateway-class", GKE_CLASS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until ready (or EOF when it fails)
    if not line.startswith("export KUBECONFIG="):
        proc.kill()
        raise AssertionError(f"no KUBECONFIG line: {line!r}\n{proc.communicate(timeout=10)[1]}")
    return proc, line.strip().split("=", 1)[1]


def kubectl(kubectl_bin: str, kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([kubectl_bin, *args], input=stdin, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "KUBECONFIG": kubeconfig})
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def wait_until(check: object, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()  # type: ignore[operator]
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> str:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    return err


def helm_install_then_uninstall(helm_bin: str, kubectl_bin: str, kubeconfig: str, repo_root: Path,
                                tmp_path: Path) -> None:
    """The source document's `helm install` (chart path for the OCI URL): a live EPP; `helm uninstall`: nothing left.

    The EPP becomes Ready only once it has read its pool from the API server, so Ready proves
    the runtime gave it a working kubeconfig.
    """
    env = {**os.environ, "KUBECONFIG": kubeconfig, "HELM_CACHE_HOME": str(tmp_path / "helm"),
           "HELM_CONFIG_HOME": str(tmp_path / "helm"), "HELM_DATA_HOME": str(tmp_path / "helm")}
    kubectl(kubectl_bin, kubeconfig, "apply", "-f", str(repo_root / "config" / "crd" / "ga.yaml"))
    release = "vllm-llama3-8b-instruct-ga"
    install = subprocess.run([helm_bin, "install", release, "--set",
                              "inferencePool.modelServers.matchLabels.app=vllm-llama3-8b-instruct", "--set",
                              "provider.name=gke", str(repo_root / "charts" / "inferencepool")],
                             capture_output=True, text=True, timeout=120, env=env)
    assert install.returncode == 0, install.stderr
    assert release in kubectl(kubectl_bin, kubeconfig, "get", "infpool")

    def epp_pods(ready_only: bool) -> list[dict[str, object]]:
        items = json.loads(kubectl(kubectl_bin, kubeconfig, "get", "pods", "-o", "json"))["items"]
        epp = [p for p in items if p["metadata"]["name"].startswith(release + "-epp-")]
        if ready_only:
            epp = [p for p in epp if any(c["type"] == "Ready" and c["status"] == "True"
                                         for c in p["status"].get("conditions", []))]
        return epp

    (pod,) = wait_until(lambda: epp_pods(True), 60, "the chart's EPP pod Ready")  # type: ignore[misc]
    epp_ip = pod["status"]["podIP"]  # type: ignore[index]
    # this cluster's EPP process: its pod address is in its arguments (another test's cluster may run
    # an EPP of the same pool name: an orphan of an interrupted run made this wait fail once)
    epp_process = f"--host={epp_ip} "
    assert processes_mentioning(epp_process)
    uninstall = subprocess.run([helm_bin, "uninstall", release], capture_output=True, text=True, timeout=60,
                               env=env)
    assert uninstall.returncode == 0, uninstall.stderr
    # the cascade (Deployment -> ReplicaSet -> Pod) and the EPP's SIGTERM drain; 60 s: on a loaded
    # 2-core machine 30 s was seen to run out (the wait ends as soon as both are gone)
    wait_until(lambda: not epp_pods(False) and not processes_mentioning(epp_process), 60,
               "the EPP pod and process gone after helm uninstall")
    assert "No resources found" in subprocess.run(
        [kubectl_bin, "get", "deployments,replicasets,services", "-l", f"app.kubernetes.io/instance={release}"],
        capture_output=True, text=True, env=env).stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{epp_ip}:9090/metrics", timeout=2)


def test_up_gateway_class_gateway_pods_shutdown_restart(tmp_path: Path, kubectl_bin: str, helm_bin: str,
                                                       repo_root: Path) -> None:
    state = tmp_path / "state"
    pods, gateways = private_cidr(8000), private_cidr(80)
    pod_prefix = pods.rsplit(".", 1)[0] + "."
    proc, kubeconfig = start_up(state, pods, gateways)
    try:
        classes = kubectl(kubectl_bin, kubeconfig, "get", "gatewayclass")
        rows = {line.split()[0]: line.split() for line in classes.splitlines()[1:]}
        assert set(rows) == {"infergate", GKE_CLASS}, classes
        assert rows[GKE_CLASS][1] == "infergate.io/gateway-controller"
        assert wait_until(lambda: "True" in kubectl(kubectl_bin, kubeconfig, "get", "gatewayclass", GKE_CLASS),
                          20, "GatewayClass Accepted")
        port = free_port()
        gateway = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                   "metadata": {"name": "inference-gateway"},
                   "spec": {"gatewayClassName": GKE_CLASS,
                            "listeners": [{"name": "http", "protocol": "HTTP", "port": port}]}}
        kubectl(kubectl_bin, kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(gateway))
        sim = yaml.safe_load((repo_root / "examples" / "sim-deployment.yaml").read_text())
        sim["spec"]["replicas"] = 1
        kubectl(kubectl_bin, kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(sim))

        def programmed() -> list[str] | None:
            out = kubectl(kubectl_bin, kubeconfig, "get", "gateway", "-o", "wide").splitlines()
            row = out[1].split() if len(out) > 1 else []
            return row if len(row) >= 4 and row[3] == "True" else None

        row = wait_until(programmed, 30, "Gateway Programmed")
        assert row[:2] == ["inference-gateway", GKE_CLASS]  # type: ignore[index]
        address = kubectl(kubectl_bin, kubeconfig, "get", "gateway/inference-gateway", "-o",
                          "jsonpath={.status.addresses[0].value}")
        assert address.startswith(gateways.rsplit(".", 1)[0] + "."), address
        # Envoy listens there (no route yet: 404 from Envoy, not a refused connection)
        assert httpx.get(f"http://{address}:{port}/", timeout=5).status_code == 404

        def running_pod() -> dict[str, object] | None:
            items = json.loads(kubectl(kubectl_bin, kubeconfig, "get", "pods", "-l", "app=vllm-llama3-8b-instruct",
                                       "-o", "json"))["items"]
            ready = [p for p in items if any(c["type"] == "Ready" and c["status"] == "True"
                                             for c in p["status"].get("conditions", []))]
            return ready[0] if len(items) == 1 and ready else None

        pod = wait_until(running_pod, 40, "a Ready simulator pod")
        name, ip = pod["metadata"]["name"], pod["status"]["podIP"]  # type: ignore[index]
        assert ip.startswith(pod_prefix)
        wide = kubectl(kubectl_bin, kubeconfig, "get", "pods", "-o", "wide")
        assert name in wide and "Running" in wide and ip in wide and "1/1" in wide
        assert httpx.get(f"http://{ip}:8000/health", timeout=5).status_code == 200
        assert f"ready {ip}:8000" in kubectl(kubectl_bin, kubeconfig, "logs", name)  # the simulator's stdout
        helm_install_then_uninstall(helm_bin, kubectl_bin, kubeconfig, repo_root, tmp_path)
    finally:
        err = stop(proc)
    assert "stopped" in err
    assert processes_mentioning(str(state), f"POD_IP={pod_prefix}") == []  # no gateway, Envoy or pod left
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{ip}:8000/health", timeout=2)

    # restart on the same state: same objects, the pod runs again under its name and address
    background = subprocess.run(
        [sys.executable, "-m", "infergate", "up", "--background", "--state-dir", str(state), "--port", "0",
         "--pod-cidr", pods, "--address-pool", gateways, "--gateway-class", GKE_CLASS],
        capture_output=True, text=True, timeout=150)
    assert background.returncode == 0, background.stderr
    assert background.stdout.strip() == f"export KUBECONFIG={state.resolve() / 'kubeconfig'}"
    pid = int((state / "up.pid").read_text())
    try:
        kubeconfig = str(state / "kubeconfig")
        again = wait_until(running_pod, 40, "the pod back after a restart")
        assert again["metadata"]["name"] == name and again["status"]["podIP"] == ip  # type: ignore[index]
        assert httpx.get(f"http://{ip}:8000/health", timeout=5).status_code == 200
        assert kubectl(kubectl_bin, kubeconfig, "get", "gateway/inference-gateway", "-o",
                       "jsonpath={.status.addresses[0].value}") == address
    finally:
        # even a SIGKILLed `infergate up` leaves nothing behind (the children die with it)
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not processes_mentioning(str(state), f"POD_IP={pod_prefix}"), 40, "everything stopped")
