"""The source document's `helm install` run for real, against `infergate up`.

`infergate up` (API server, Gateway API CRDs, the source document's GatewayClass
gke-l7-regional-external-managed served by `infergate gateway` with Envoy, the local runtime
that runs Deployments of infergate's image as local processes on loopback pod IPs); the
upstream GIE v1.0.0 CRDs (+ v0.3.0 InferenceModel) applied with kubectl, as the source document
does. Then, with the real helm and kubectl: `kubectl apply -f examples/sim-deployment.yaml`;
`helm install` of a preview pool (from the packaged .tgz) and a GA pool (from the chart folder)
with the source document's `--set` flags; `kubectl get infpool`; the source document's 50/50
HTTPRoute; completions through the Gateway reach both EPPs; `helm upgrade` of values; a second
release of the same name in another namespace; `helm uninstall`: nothing is left behind and
the EPP processes are gone. Also: a cluster serving GKE's APIs, and the bbr chart.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from infergate.util.net import free_port, random_loopback_block

from ..support.eventually import eventually
from .chartkit import BBR_CHART, CHARTS, POOL_CHART, REPO_ROOT, live_processes

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("charts-e2e")]

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
APP = "vllm-llama3-8b-instruct"
GA_RELEASE, PREVIEW_RELEASE = "vllm-llama3-8b-instruct-ga", "vllm-llama3-8b-instruct-preview"
GKE_CLASS = "gke-l7-regional-external-managed"  # the source document's GatewayClass
SOURCE_DOCUMENT_FLAGS = ["--set", f"inferencePool.modelServers.matchLabels.app={APP}", "--set", "provider.name=gke"]


def processes_of(kubeconfig: Path, needle: str) -> list[int]:
    """Live processes started for this cluster whose command line contains ``needle``: a pod's
    KUBECONFIG is its own (its ServiceAccount's token) under the cluster's state directory, the
    directory of ``kubeconfig``."""
    state_dir = f"KUBECONFIG={kubeconfig.parent}/".encode()
    own = f"KUBECONFIG={kubeconfig}".encode()
    return [pid for pid, cmdline, environ in live_processes()
            if needle in cmdline and any(e == own or e.startswith(state_dir) for e in environ)]


@dataclass
class Cluster:
    tools: dict[str, str]
    env: dict[str, str]
    kubeconfig: Path
    listen_port: int
    work: Path

    def run(self, tool: str, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.tools[tool], *args], input=input, capture_output=True, text=True, env=self.env,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return proc

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.run("kubectl", *args, input=input).stdout

    def helm(self, *args: str) -> str:
        return self.run("helm", *args).stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def gateway_url(self) -> str:
        gateway = self.get("gateway", "inference-gateway")
        return f"http://{gateway['status']['addresses'][0]['value']}:{self.listen_port}"



def private_pod_cidr() -> str:
    """A /24 inside 127.0.0.0/8 whose first addresses have 8000 and 9002 free (tests run concurrently)."""
    for _ in range(20):
        first = random_loopback_block(8, 8000, rng=random.Random())[0]
        prefix = first.rsplit(".", 1)[0]
        if all(_port_free(f"{prefix}.{i}", 9002) for i in range(1, 9)):
            return prefix + ".0/24"
    raise AssertionError("no free loopback /24 for the pods")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def one_ready(cluster: Cluster, name: str) -> bool:
    return ready_replicas(cluster, name) == 1


def ready_replicas(cluster: Cluster, name: str, namespace: str = "default") -> int:
    status = cluster.get("deployment", name, "-n", namespace).get("status") or {}
    return int(status.get("readyReplicas") or 0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, kubectl_bin: str, helm_bin: str,
            reference_dir: Path, envoy_bin: str) -> Iterator[Cluster]:
    """`infergate up` (foreground, as a user runs it) with the source document's GatewayClass;
    the upstream CRDs applied with kubectl, as the source document does."""
    work = tmp_path_factory.mktemp("charts-e2e")
    listen = free_port()
    _, a, b, _ = random_loopback_block(1, listen)[0].split(".")
    up = subprocess.Popen(
        [sys.executable, "-m", "infergate", "up", "--state-dir", str(work / "up"), "--port", "0",
         "--pod-cidr", private_pod_cidr(), "--address-pool", f"127.{a}.{b}.0/24", "--gateway-class", GKE_CLASS],
        stdout=subprocess.PIPE, stderr=(work / "up.log").open("w"), text=True, start_new_session=True)
    try:
        assert up.stdout is not None
        line = up.stdout.readline()  # once ready; EOF if it failed
        assert line.startswith("export KUBECONFIG="), f"{line!r}\n{(work / 'up.log').read_text()[-3000:]}"
        kubeconfig = Path(line.strip().split("=", 1)[1])
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(work / "home"),
               "HELM_CACHE_HOME": str(work / "helm-cache"), "HELM_CONFIG_HOME": str(work / "helm-config"),
               "HELM_DATA_HOME": str(work / "helm-data")}
        cluster = Cluster({"kubectl": kubectl_bin, "helm": helm_bin}, env, kubeconfig, listen, work)
        crds = [*sorted((reference_dir / "gie-v1.0.0" / "crd").glob("*.yaml")),
                reference_dir / "gie-v0.3.0" / "crd" / "inference.networking.x-k8s.io_inferencemodels.yaml"]
        cluster.kubectl("apply", *[a for f in crds for a in ("-f", str(f))])
        cluster.kubectl("apply", "-f", "-", input=f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: inference-gateway, namespace: default}}
spec:
  gatewayClassName: {GKE_CLASS}
  listeners:
  - {{name: http, protocol: HTTP, port: {listen}}}
""")
        yield cluster
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)


def completions_through_gateway(cluster: Cluster, count: int) -> list[str]:
    """POST /v1/completions to the Gateway's address; the serving pods (x-inference-pod)."""
    served = []
    with httpx.Client(timeout=30) as http:
        for i in range(count):
            response = http.post(f"{cluster.gateway_url()}/v1/completions",
                                 json={"model": MODEL, "prompt": f"Write as if you were a critic: city {i}",
                                       "max_tokens": 3, "temperature": 0})
            assert response.status_code == 200, (response.status_code, response.text)
            assert response.json()["choices"][0]["text"]
            served.append(response.headers.get("x-inference-pod", "?"))
    return served


def epp_requests(cluster: Cluster, release: str) -> float:
    """Requests the release's EPP pods scheduled (their inference_model_request_total)."""
    total = 0.0
    for pod in cluster.get("pods", "-l", f"inferencepool={release}-epp")["items"]:
        text = httpx.get(f"http://{pod['status']['podIP']}:9090/metrics", timeout=5).text
        total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith("inference_model_request_total{"))
    return total


def test_source_document_install_route_upgrade_uninstall(cluster: Cluster, tmp_path: Path) -> None:
    # the model servers
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "examples" / "sim-deployment.yaml"))

    # the preview pool from the packaged chart, the GA pool from the folder, as the source document
    package = re.search(r"saved it to: (\S+\.tgz)", cluster.helm("package", str(POOL_CHART), "-d", str(tmp_path)))
    assert package, "helm package printed no path"
    installed_preview = cluster.helm("install", PREVIEW_RELEASE, *SOURCE_DOCUMENT_FLAGS,
                                     "--set", "inferencePool.apiVersion=inference.networking.x-k8s.io/v1alpha2",
                                     package[1])
    # the chart's default failure mode: FailOpen (upstream's since v1.4; the source document's v1.0 chart had FailClose)
    installed_ga = cluster.helm("install", GA_RELEASE, *SOURCE_DOCUMENT_FLAGS, "--version", "0.1.0", str(POOL_CHART))
    for out in (installed_preview, installed_ga):
        assert re.search(r"^STATUS: deployed$", out, re.M), out
        # provider.name=gke on a cluster without GKE's APIs: said clearly, nothing half-created
        assert "WARNING: provider.name=gke but this cluster does not serve networking.gke.io/v1" in out
    assert "infergate epp --pool-group inference.networking.x-k8s.io" in installed_preview

    # kubectl get infpool (the GA short name) and the fully qualified preview resource
    table = cluster.kubectl("get", "infpool")
    assert re.search(rf"^{GA_RELEASE}\s", table, re.M) and PREVIEW_RELEASE not in table
    preview = cluster.get("inferencepools.inference.networking.x-k8s.io", PREVIEW_RELEASE)
    assert preview["spec"]["extensionRef"]["name"] == f"{PREVIEW_RELEASE}-epp"
    assert preview["spec"]["selector"] == {"app": APP}
    ga = cluster.get("inferencepools.inference.networking.k8s.io", GA_RELEASE)
    assert ga["spec"]["endpointPickerRef"] == {"group": "", "kind": "Service", "name": f"{GA_RELEASE}-epp",
                                               "port": {"number": 9002}, "failureMode": "FailOpen"}

    # the source document's objectives (GA) and an InferenceModel (preview), the 50/50 route
    cluster.kubectl("apply", "-f", "-", input=f"""
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {{name: food-review}}
spec: {{priority: 2, poolRef: {{group: inference.networking.k8s.io, name: {GA_RELEASE}}}}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {{name: base-model}}
spec: {{priority: 2, poolRef: {{group: inference.networking.k8s.io, name: {GA_RELEASE}}}}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {{name: base-model}}
spec: {{modelName: {MODEL}, criticality: Critical, poolRef: {{name: {PREVIEW_RELEASE}}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: llm-route}}
spec:
  parentRefs:
  - {{group: gateway.networking.k8s.io, kind: Gateway, name: inference-gateway}}
  rules:
  - backendRefs:
    - {{group: inference.networking.x-k8s.io, kind: InferencePool, name: {PREVIEW_RELEASE}, weight: 50}}
    - {{group: inference.networking.k8s.io, kind: InferencePool, name: {GA_RELEASE}, weight: 50}}
""")

    # the runtime runs the chart's EPPs and the simulators; the gateway programs the route
    eventually(lambda: ready_replicas(cluster, APP) == 3, 90, "3 simulator pods ready")
    for epp in (f"{PREVIEW_RELEASE}-epp", f"{GA_RELEASE}-epp"):
        eventually(functools.partial(one_ready, cluster, epp), 60, f"{epp} ready")

    def programmed() -> bool:
        gateway = cluster.get("gateway", "inference-gateway")
        conditions = {c["type"]: c["status"] for c in gateway["status"]["conditions"]}
        return conditions.get("Programmed") == "True" and bool(gateway["status"].get("addresses"))

    try:
        eventually(programmed, 60, "Gateway Programmed")
        eventually(lambda: completions_through_gateway(cluster, 1), 60, "first completion through the gateway")
    except AssertionError as exc:
        logs = sorted((cluster.work / "up").rglob("gateway*.log"))
        raise AssertionError(f"{exc}\n{logs[0].read_text()[-4000:] if logs else ''}") from None

    # Envoy learns the second pool's backend, then its EPP's address and first health check, a
    # moment after the Gateway is Programmed; until then FailOpen routes around that EPP.
    def both_epps_in_the_path() -> bool:
        completions_through_gateway(cluster, 4)
        return epp_requests(cluster, PREVIEW_RELEASE) > 0 and epp_requests(cluster, GA_RELEASE) > 0

    eventually(both_epps_in_the_path, 30, "both pools' EPPs scheduling requests")
    before = {release: epp_requests(cluster, release) for release in (PREVIEW_RELEASE, GA_RELEASE)}
    served = completions_through_gateway(cluster, 24)
    assert set(served) <= {p["metadata"]["name"] for p in cluster.get("pods", "-l", f"app={APP}")["items"]}
    # both pools' EPPs scheduled some of these (50/50 split; all on one side: p = 2 * 0.5**24)
    assert all(epp_requests(cluster, release) > count for release, count in before.items()), before

    # helm upgrade: two EPP replicas, each serving (no leader election), and FailClose for the GA pool
    upgraded = cluster.helm("upgrade", GA_RELEASE, str(POOL_CHART), "--reuse-values",
                            "--set", "inferenceExtension.replicas=2", "--set", "inferenceExtension.enableLeaderElection=false",
                            "--set", "inferenceExtension.failureMode=FailClose")
    assert re.search(r"^REVISION: 2$", upgraded, re.M)
    assert cluster.get("infpool", GA_RELEASE)["spec"]["endpointPickerRef"]["failureMode"] == "FailClose"
    eventually(lambda: ready_replicas(cluster, f"{GA_RELEASE}-epp") == 2, 60, "GA EPP scaled to 2")
    assert len(processes_of(cluster.kubeconfig, f"--pool-name={GA_RELEASE} ")) == 2
    completions_through_gateway(cluster, 6)

    # the same release name in another namespace: no clash over any object
    cluster.kubectl("create", "namespace", "team-b")
    other = cluster.helm("install", GA_RELEASE, *SOURCE_DOCUMENT_FLAGS, "-n", "team-b",
                         "--set", "inferenceExtension.replicas=0", str(POOL_CHART))
    assert re.search(r"^STATUS: deployed$", other, re.M)
    assert cluster.get("infpool", GA_RELEASE, "-n", "team-b")["metadata"]["namespace"] == "team-b"

    # helm uninstall: nothing is left behind, the EPP processes are gone
    epp_ips = [p["status"]["podIP"] for p in cluster.get("pods", "-l", "app.kubernetes.io/name=inferencepool")["items"]]
    assert len(epp_ips) == 3
    cluster.helm("uninstall", PREVIEW_RELEASE)
    cluster.helm("uninstall", GA_RELEASE)
    cluster.helm("uninstall", GA_RELEASE, "-n", "team-b")
    assert cluster.helm("list", "-A", "-q").strip() == ""
    for namespace in ("default", "team-b"):
        leftovers = cluster.kubectl(
            "get", "deployments,replicasets,services,configmaps,serviceaccounts,roles,rolebindings,secrets,"
            "inferencepools.inference.networking.k8s.io,inferencepools.inference.networking.x-k8s.io",
            "-n", namespace, "-l", "app.kubernetes.io/name=inferencepool", "-o", "name")
        assert leftovers.strip() == "", leftovers
        assert "sh.helm.release" not in cluster.kubectl("get", "secrets", "-n", namespace, "-o", "name")

    def epps_gone() -> bool:
        pods = cluster.get("pods", "-A", "-l", "app.kubernetes.io/name=inferencepool")["items"]
        return not pods and not processes_of(cluster.kubeconfig, " epp ")

    eventually(epps_gone, 60, "EPP pods and processes gone")
    for ip in epp_ips:
        with socket.socket() as sock:
            sock.settimeout(1)
            assert sock.connect_ex((ip, 9002)) != 0, f"an EPP still listens on {ip}:9002"
    # the model servers are untouched
    assert ready_replicas(cluster, APP) == 3


GKE_CRDS = "\n---\n".join(f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{kind: {kind}, plural: {plural}, singular: {plural[:-1]}, listKind: {kind}List}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
""" for group, kind, plural in (("networking.gke.io", "HealthCheckPolicy", "healthcheckpolicies"),
                                ("networking.gke.io", "GCPBackendPolicy", "gcpbackendpolicies"),
                                ("monitoring.googleapis.com", "PodMonitoring", "podmonitorings")))


def test_gke_cluster_gets_the_policies_and_a_warning_without_provider(cluster: Cluster) -> None:
    """On a cluster that serves GKE's APIs (discovery, as helm reads it): provider.name=gke
    creates the policies; provider.name=none installs with a clear warning."""
    cluster.kubectl("apply", "-f", "-", input=GKE_CRDS)
    eventually(lambda: "healthcheckpolicies" in cluster.kubectl("api-resources", "--api-group=networking.gke.io"),
               30, "GKE APIs served")
    cluster.kubectl("create", "namespace", "gke")
    flags = ["-n", "gke", "--set", "inferenceExtension.replicas=0", str(POOL_CHART)]
    with_provider = cluster.helm("install", "with-gke", *SOURCE_DOCUMENT_FLAGS, *flags)
    assert "WARNING" not in with_provider
    policy = cluster.get("healthcheckpolicies.networking.gke.io", "with-gke", "-n", "gke")
    assert policy["spec"]["targetRef"] == {"group": "inference.networking.k8s.io", "kind": "InferencePool",
                                           "name": "with-gke"}
    assert policy["spec"]["default"]["config"]["httpHealthCheck"] == {"requestPath": "/health", "port": 8000}
    backend = cluster.get("gcpbackendpolicies.networking.gke.io", "with-gke", "-n", "gke")
    assert backend["spec"]["default"]["timeoutSec"] == 300
    assert cluster.get("podmonitorings.monitoring.googleapis.com", "with-gke-epp", "-n", "gke")["spec"]["endpoints"]

    without = cluster.helm("install", "without-provider", "--set",
                           f"inferencePool.modelServers.matchLabels.app={APP}", *flags)
    assert "WARNING: this cluster looks like GKE" in without
    assert "no HealthCheckPolicy or GCPBackendPolicy was created" in without
    assert cluster.kubectl("get", "healthcheckpolicies.networking.gke.io", "-n", "gke", "-o", "name").split() == [
        "healthcheckpolicy.networking.gke.io/with-gke"]

    for release in ("with-gke", "without-provider"):
        cluster.helm("uninstall", release, "-n", "gke")
    for resource in ("healthcheckpolicies.networking.gke.io", "gcpbackendpolicies.networking.gke.io",
                     "podmonitorings.monitoring.googleapis.com", "inferencepools.inference.networking.k8s.io",
                     "deployments"):
        assert cluster.kubectl("get", resource, "-n", "gke", "-o", "name").strip() == "", resource


def test_body_based_routing_chart_runs_infergate_bbr(cluster: Cluster) -> None:
    cluster.kubectl("create", "namespace", "bbr")
    installed = cluster.helm("install", "bbr", "-n", "bbr", str(BBR_CHART))
    assert re.search(r"^STATUS: deployed$", installed, re.M)
    assert "body-based-router.bbr.svc:9004" in installed
    # Ready means the runtime's gRPC readiness probe on the pod's health port answered SERVING
    eventually(lambda: ready_replicas(cluster, "body-based-router", "bbr") == 1, 60, "bbr ready")
    (pod,) = cluster.get("pods", "-n", "bbr", "-l", "app=body-based-router")["items"]
    metrics = httpx.get(f"http://{pod['status']['podIP']}:9090/metrics", timeout=5).text
    assert "bbr_success_total" in metrics
    cluster.helm("uninstall", "bbr", "-n", "bbr")
    eventually(lambda: not processes_of(cluster.kubeconfig, " bbr "), 30, "bbr process stopped")
    assert cluster.kubectl("get", "deployments,services,serviceaccounts", "-n", "bbr", "-o", "name").strip() == ""


def _sim_deployment(name: str, namespace: str, replicas: int) -> str:
    """examples/sim-deployment.yaml as ``name`` in ``namespace`` (label app=NAME), fast simulated time."""
    doc = yaml.safe_load((REPO_ROOT / "examples" / "sim-deployment.yaml").read_text())
    doc["metadata"].update(name=name, namespace=namespace, labels={"app": name})
    doc["spec"]["replicas"] = replicas
    doc["spec"]["selector"]["matchLabels"] = doc["spec"]["template"]["metadata"]["labels"] = {"app": name}
    doc["spec"]["template"]["spec"]["containers"][0]["args"].append("--time-scale=20")
    return yaml.safe_dump(doc)


def test_standalone_chart_runs_its_epp_and_envoy_sidecar_in_one_pod(cluster: Cluster) -> None:
    """charts/standalone on `infergate up`: one pod, two containers (the EPP and Envoy, each a
    local process on the pod's address, Envoy reaching the EPP at its 127.0.0.1); the pod Ready
    once both are; OpenAI requests to the sidecar's port are routed to the pods the EPP picks."""
    namespace, app = "standalone", "sim-standalone"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("apply", "-f", "-", input=_sim_deployment(app, namespace, 2))
    installed = cluster.helm("install", "qwen", "-n", namespace, "--set",
                             f"inferencePool.modelServers.matchLabels.app={app}", "--wait", "--timeout", "90s",
                             str(CHARTS / "standalone"))
    assert re.search(r"^STATUS: deployed$", installed, re.M), installed
    eventually(lambda: ready_replicas(cluster, app, namespace) == 2, 60, "model servers ready")
    (pod,) = cluster.get("pods", "-n", namespace, "-l", "app.kubernetes.io/component=endpoint-picker")["items"]
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    statuses = {c["name"]: c for c in pod["status"]["containerStatuses"]}
    assert list(statuses) == ["epp", "envoy"]
    assert all(c["ready"] and c["started"] and "running" in c["state"] for c in statuses.values()), statuses
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
    servers = {p["metadata"]["name"] for p in cluster.get("pods", "-n", namespace, "-l", f"app={app}")["items"]}

    client = openai.OpenAI(base_url=f"http://{ip}:8081/v1", api_key="unused", max_retries=0, timeout=30)
    served = []
    for i in range(6):
        raw = client.completions.with_raw_response.create(model=MODEL, prompt=f"Say hi {i}", max_tokens=3)
        assert raw.parse().choices[0].text
        served.append(raw.headers["x-inference-pod"])
    assert set(served) <= servers, (served, servers)
    metrics = httpx.get(f"http://{ip}:9090/metrics", timeout=5).text  # the EPP scheduled every request
    assert sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("inference_model_request_total{")) >= 6

    # logs per container: Envoy's access log has the requests; without -c the API names the choices
    eventually(lambda: '"POST /v1/completions HTTP/1.1" 200' in cluster.kubectl("logs", name, "-n", namespace,
                                                                                 "-c", "envoy"),
               30, "Envoy's access log (flushed every few seconds)")
    assert "/v1/completions" not in cluster.kubectl("logs", name, "-n", namespace, "-c", "epp")
    default = cluster.run("kubectl", "logs", name, "-n", namespace)  # kubectl picks the first container
    assert 'Defaulted container "epp" out of: epp, envoy' in default.stderr
    no_container = cluster.run("kubectl", "get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{name}/log",
                               check=False)
    assert no_container.returncode != 0
    assert f"a container name must be specified for pod {name}, choose one of: [epp envoy]" in no_container.stderr

    cluster.helm("uninstall", "qwen", "-n", namespace, "--wait")
    eventually(lambda: not processes_of(cluster.kubeconfig, f"{namespace}/{name}/envoy-envoy.yaml"), 30,
               "the sidecar's Envoy stopped")
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_replicas_that_all_serve_share_their_picks(cluster: Cluster) -> None:
    """inferenceExtension.pickSharing with two EPP replicas that all serve: Envoy spreads the
    requests over both, and each EPP applies the other's picks (found among the EPP pods by their
    labels, from its own pod watch: the local runtime has no DNS)."""
    namespace, app, release = "default", "sim-sharing", "sharing"
    cluster.kubectl("apply", "-f", "-", input=_sim_deployment(app, namespace, 2))
    installed = cluster.helm("install", release, "--set", f"inferencePool.modelServers.matchLabels.app={app}",
                             "--set", "inferenceExtension.replicas=2", "--set", "inferenceExtension.enableLeaderElection=false",
                             "--set", "inferenceExtension.pickSharing.enabled=true", "--wait", "--timeout", "90s",
                             str(POOL_CHART))
    assert re.search(r"^STATUS: deployed$", installed, re.M), installed
    cluster.kubectl("apply", "-f", "-", input=f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: sharing-route, namespace: {namespace}}}
spec:
  parentRefs:
  - {{group: gateway.networking.k8s.io, kind: Gateway, name: inference-gateway}}
  hostnames: [sharing.example]
  rules:
  - backendRefs:
    - {{group: inference.networking.k8s.io, kind: InferencePool, name: {release}}}
""")
    eventually(lambda: ready_replicas(cluster, app, namespace) == 2 and ready_replicas(cluster, f"{release}-epp") == 2,
               90, "model servers and both EPPs ready")
    epps = [p["status"]["podIP"] for p in cluster.get("pods", "-l", f"inferencepool={release}-epp")["items"]]
    assert len(epps) == 2

    def counters(ip: str) -> dict[str, float]:
        text = httpx.get(f"http://{ip}:9090/metrics", timeout=5).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            for name in ("infergate_epp_pick_sharing_sent_total", 'infergate_epp_pick_sharing_received_total{result="applied"}',
                         "inference_model_request_total{"):
                if line.startswith(name):
                    out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        return out

    def send(count: int) -> None:
        with httpx.Client(timeout=30) as http:
            for i in range(count):
                response = http.post(f"{cluster.gateway_url()}/v1/completions", headers={"host": "sharing.example"},
                                     json={"model": MODEL, "prompt": "You review dishes for a food magazine. " * 8
                                           + f"Question {i}",
                                           "max_tokens": 3})
                assert response.status_code == 200, (response.status_code, response.text)

    def shared() -> bool:
        send(4)  # ZMQ connects in the background: send until both replicas have applied the other's picks
        seen = [counters(ip) for ip in epps]
        assert all(c.get('infergate_epp_pick_sharing_received_total{result="applied"}', 0) > 0 for c in seen), seen
        return True

    eventually(shared, 60, "each EPP applying the other's picks")
    seen = [counters(ip) for ip in epps]
    assert all(c.get("inference_model_request_total{", 0) > 0 for c in seen), seen  # both picked
    assert all(c.get("infergate_epp_pick_sharing_sent_total", 0) > 0 for c in seen), seen
    cluster.kubectl("delete", "httproute", "sharing-route")
    cluster.helm("uninstall", release, "--wait")
    cluster.kubectl("delete", "deployment", app)
