"""Fixtures for the migration tests: one embedded API server per module (with the preview
CRDs of the v0.3.0 bundle and the Gateway API CRDs installed, as a cluster before the
migration), a fresh namespace per test, the real kubectl and helm pointed at it, and a
runner for `infergate migrate` in-process (click) against the server's kubeconfig."""

from __future__ import annotations

import copy
import functools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer
from infergate.migrate.cluster import ClusterTarget, KubeCluster
from infergate.migrate.resources import CRDS, NAMESPACES

from ..support.clitool import CliResult, CliTool

TESTDATA = Path(__file__).resolve().parent / "testdata"
REPO = Path(__file__).resolve().parents[2]




@functools.cache
def _parsed(text: str) -> tuple[dict[str, Any], ...]:
    # libyaml's loader where PyYAML has it: the CRD bundles (gateway-api.yaml: 170 KB), parsed for
    # each module's API server and test, took ~0.2 s each with the pure-Python one
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return tuple(d for d in yaml.load_all(text, Loader=loader) if isinstance(d, dict))


def load_objects(path: Path, namespace: str | None = None) -> list[dict[str, Any]]:
    """The YAML documents of ``path`` (each call its own copy: callers change them)."""
    docs = copy.deepcopy(list(_parsed(path.read_text())))
    if namespace is not None:
        for d in docs:
            if d.get("kind") != "CustomResourceDefinition":
                d.setdefault("metadata", {})["namespace"] = namespace
    return docs


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedAPIServer]:
    handle = EmbeddedAPIServer.run_in_thread(tmp_path_factory.mktemp("migrate-apiserver"))
    try:
        cluster = KubeCluster.connect(ClusterTarget(str(handle.kubeconfig_path)))
        for bundle in ("gateway-api.yaml", "preview.yaml"):
            for crd in load_objects(REPO / "config" / "crd" / bundle):
                cluster.apply(CRDS, crd)
        cluster.close()
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def cluster(apiserver: ThreadedAPIServer) -> Iterator[KubeCluster]:
    c = KubeCluster.connect(ClusterTarget(str(apiserver.kubeconfig_path)))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def namespace(cluster: KubeCluster) -> str:
    name = f"m-{uuid.uuid4().hex[:8]}"
    cluster.apply(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
def kubectl(kubectl_bin: str, apiserver: ThreadedAPIServer, tmp_path: Path) -> CliTool:
    return CliTool(kubectl_bin, apiserver.kubeconfig_path, tmp_path / "home-kubectl")


@pytest.fixture
def helm(helm_bin: str, apiserver: ThreadedAPIServer, tmp_path: Path) -> CliTool:
    return CliTool(helm_bin, apiserver.kubeconfig_path, tmp_path / "home-helm")


@dataclass
class Migrate:
    kubeconfig: Path
    helm_bin: str

    def __call__(self, *args: str) -> CliResult:
        from infergate.cli.migrate import command

        sub, rest = args[0], list(args[1:])
        argv = [sub, "--kubeconfig", str(self.kubeconfig), "--helm", self.helm_bin, *rest]
        result = CliRunner().invoke(command, argv, catch_exceptions=False)
        stderr = result.stderr if result.stderr_bytes is not None else ""
        return CliResult(result.exit_code, result.stdout, stderr)


@pytest.fixture
def migrate(apiserver: ThreadedAPIServer, helm_bin: str) -> Migrate:
    return Migrate(apiserver.kubeconfig_path, helm_bin)


@pytest.fixture
def preview_stack(kubectl: CliTool, cluster: KubeCluster, namespace: str) -> str:
    """The source document's starting point in ``namespace``, applied with the real kubectl
    (the preview CRDs are installed again when an earlier test's migration deleted them)."""
    for crd in load_objects(REPO / "config" / "crd" / "preview.yaml"):
        if cluster.get(CRDS, None, crd["metadata"]["name"]) is None:
            cluster.apply(CRDS, crd)
    kubectl.run("apply", "-n", namespace, "-f", str(TESTDATA / "preview-stack.yaml"))
    return namespace


def _conditions(*pairs: tuple[str, str, str], generation: int = 1) -> list[dict[str, Any]]:
    return [{"type": t, "status": s, "reason": r, "message": "", "observedGeneration": generation,
             "lastTransitionTime": "2026-01-01T00:00:00Z"} for t, s, r in pairs]


class StatusWriter:
    """Writes the statuses a gateway controller would (Gateway Programmed, HTTPRoute
    Accepted/ResolvedRefs per parent, InferencePool parent Accepted) for one namespace, every
    0.1 s in a thread. ``reject_group``: backendRefs of that group get ResolvedRefs=False/
    InvalidKind (an Istio-1.28-like gateway, migration.md §9 case 4) while the Gateway stays
    Programmed. A stand-in for the gateway where the tests are about the migration's logic.
    ``paused``: writes nothing (a controller that has not processed the latest changes)."""

    def __init__(self, cluster: KubeCluster, namespace: str) -> None:
        import threading

        self.cluster = cluster
        self.namespace = namespace
        self.reject_group: str | None = None
        self.paused = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> StatusWriter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            if self.paused:
                continue
            try:
                self.write_once()
            except Exception:  # objects come and go while the migration runs
                continue

    def write_once(self) -> None:
        from infergate.migrate.resources import DEPLOYMENTS, GA_POOLS, GATEWAYS, HTTPROUTES, PREVIEW_POOLS

        ns = self.namespace
        for dep in self.cluster.list(DEPLOYMENTS, ns):  # the pod runtime's part: Deployments become ready
            if not (dep.get("status") or {}).get("readyReplicas"):
                replicas = int(dep["spec"].get("replicas") or 1)
                self.cluster.merge_patch_status(DEPLOYMENTS, ns, dep["metadata"]["name"], {"status": {
                    "replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}})
        self._write_endpoint_slices()
        for gw in self.cluster.list(GATEWAYS, ns):
            self.cluster.merge_patch_status(GATEWAYS, ns, gw["metadata"]["name"], {"status": {
                "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                "conditions": _conditions(("Accepted", "True", "Accepted"), ("Programmed", "True", "Programmed"))}})
        used: set[tuple[str, str]] = set()
        for route in self.cluster.list(HTTPROUTES, ns):
            refs = [r for rule in route["spec"].get("rules") or [] for r in rule.get("backendRefs") or []]
            rejected = [r for r in refs if r.get("group") == self.reject_group]
            used |= {(r["group"], r["name"]) for r in refs if r.get("kind") == "InferencePool"}
            resolved = ("ResolvedRefs", "False", "InvalidKind") if rejected else ("ResolvedRefs", "True", "ResolvedRefs")
            parents = [{"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": ns,
                                      "name": p["name"]},
                        "controllerName": "infergate.io/gateway-controller",
                        "conditions": _conditions(("Accepted", "True", "Accepted"), resolved,
                                                  generation=int(route["metadata"].get("generation") or 1))}
                       for p in route["spec"].get("parentRefs") or []]
            self.cluster.merge_patch_status(HTTPROUTES, ns, route["metadata"]["name"], {"status": {"parents": parents}})
        for group, name in used:
            resource = PREVIEW_POOLS if group == PREVIEW_POOLS.group else GA_POOLS
            if self.cluster.get(resource, ns, name) is None:
                continue
            accepted = ("Accepted", "True", "Accepted") if group != self.reject_group else \
                ("Accepted", "False", "NotSupportedByGateway")
            entry = [{"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": ns,
                                    "name": "inference-gateway"}, "conditions": _conditions(accepted)}]
            key = "parent" if resource is PREVIEW_POOLS else "parents"
            self.cluster.merge_patch_status(resource, ns, name, {"status": {key: entry}})


    def _write_endpoint_slices(self) -> None:
        """The endpoints controller's part: each Service with a selector gets an EndpointSlice with
        one ready endpoint per ready replica of the Deployments whose pods it selects (none once
        they are deleted)."""
        from infergate.kube.kinds import ENDPOINT_SLICES
        from infergate.migrate.readiness import SERVICE_NAME_LABEL
        from infergate.migrate.resources import DEPLOYMENTS, SERVICES

        ns = self.namespace
        deployments = self.cluster.list(DEPLOYMENTS, ns)
        for svc in self.cluster.list(SERVICES, ns):
            selector = (svc.get("spec") or {}).get("selector") or {}
            if not selector:
                continue
            ready = sum(int((d.get("status") or {}).get("readyReplicas") or 0) for d in deployments
                        if all(((d["spec"].get("template") or {}).get("metadata") or {}).get("labels", {}).get(k) == v
                               for k, v in selector.items()))
            name = svc["metadata"]["name"]
            self.cluster.apply(ENDPOINT_SLICES, {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                "metadata": {"name": f"{name}-slice", "namespace": ns, "labels": {SERVICE_NAME_LABEL: name}},
                "endpoints": [{"addresses": [f"10.0.0.{i + 1}"], "conditions": {"ready": True}} for i in range(ready)],
                "ports": [{"name": p.get("name", ""), "port": p.get("targetPort", p.get("port")), "protocol": "TCP"}
                          for p in (svc.get("spec") or {}).get("ports") or [] if isinstance(p.get("targetPort",
                                                                                                 p.get("port")), int)],
            })


@pytest.fixture
def status_writers(apiserver: ThreadedAPIServer) -> Iterator[Any]:
    """A factory: ``status_writers(namespace)`` starts a StatusWriter for that namespace."""
    c = KubeCluster.connect(ClusterTarget(str(apiserver.kubeconfig_path)))
    writers: list[StatusWriter] = []

    def start(namespace: str) -> StatusWriter:
        writers.append(StatusWriter(c, namespace).start())
        return writers[-1]

    try:
        yield start
    finally:
        for writer in writers:
            writer.stop()
        c.close()


@pytest.fixture
def status_writer(status_writers: Any, namespace: str) -> StatusWriter:
    return status_writers(namespace)


PRIORITY_METRIC = "infergate_epp_request_priority_total"
PriorityCounts = dict[tuple[str, str, int], float]  # (model_name, objective, priority) -> requests


def parse_priority_counts(text: str) -> PriorityCounts:
    """``infergate_epp_request_priority_total`` of one EPP /metrics page, summed over target models."""
    from prometheus_client.parser import text_string_to_metric_families

    out: PriorityCounts = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == PRIORITY_METRIC:
                key = (s.labels["model_name"], s.labels["objective"], int(s.labels["priority"]))
                out[key] = out.get(key, 0.0) + float(s.value)
    return out


def check_priorities(counted: dict[str, PriorityCounts], expected: dict[str, dict[str, tuple[str, int]]],
                     sent: dict[str, tuple[float, float]]) -> None:
    """Assert that every request each EPP counted carried its model's expected (objective, priority)
    on that EPP, and that per model the counts over all EPPs lie in ``sent[model]`` = (at least,
    at most): at least the requests known to have been served, at most those plus the ones whose
    fate the client does not know (cancelled or failed after scheduling)."""
    for epp, counts in counted.items():
        for (model, objective, priority), n in counts.items():
            assert model in expected[epp], f"{epp} counted {n} requests of unexpected model {model}"
            assert (objective, priority) == expected[epp][model], (
                f"{epp}: {n} requests of {model} admitted with objective={objective!r} priority={priority}, "
                f"expected {expected[epp][model]}")
    for model, (low, high) in sent.items():
        total = sum(n for counts in counted.values() for (m, _, _), n in counts.items() if m == model)
        assert low <= total <= high, f"{model}: EPPs counted {total} requests, sent {low}..{high}: {counted}"


@dataclass(frozen=True)
class PriorityAudit:
    """The helpers above, for test modules (which cannot import conftest)."""

    parse = staticmethod(parse_priority_counts)
    check = staticmethod(check_priorities)


@pytest.fixture
def priority_audit() -> PriorityAudit:
    return PriorityAudit()
