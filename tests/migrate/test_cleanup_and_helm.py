"""Teardown order and blast radius (migration.md §9 cases 1, 8, 9) and the Helm paths, each on
its own embedded API server (they install and delete CRDs), with the real kubectl and helm."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infergate.apiserver import EmbeddedAPIServer, ThreadedAPIServer
from infergate.migrate.cluster import ClusterTarget, KubeCluster
from infergate.migrate.resources import (
    CRDS,
    DEPLOYMENTS,
    GA_POOLS,
    HTTPROUTES,
    NAMESPACES,
    PREVIEW_MODELS,
    PREVIEW_POOLS,
)
from infergate.util.net import free_port

from .conftest import load_objects

TESTDATA = Path(__file__).resolve().parent / "testdata"
REPO = Path(__file__).resolve().parents[2]
CHARTS = TESTDATA / "charts"
X_POOLS, X_MODELS = "inferencepools.inference.networking.x-k8s.io", "inferencemodels.inference.networking.x-k8s.io"


@pytest.fixture
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedAPIServer]:
    """One server per test (overrides the module-wide one): these tests delete CRDs."""
    handle = EmbeddedAPIServer.run_in_thread(tmp_path_factory.mktemp("migrate-cleanup"))
    try:
        cluster = KubeCluster.connect(ClusterTarget(str(handle.kubeconfig_path)))
        for bundle in ("gateway-api.yaml", "preview.yaml"):
            for crd in load_objects(REPO / "config" / "crd" / bundle):
                cluster.apply(CRDS, crd)
        cluster.close()
        yield handle
    finally:
        handle.stop()


def new_namespace(cluster: KubeCluster, name: str) -> str:
    cluster.apply(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
def short_finalizer_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cleanup's step 4 waits 1 s (not 5 s) for the deleted preview objects to go: in the tests below
    some never go (a finalizer no controller removes, another namespace's objects under --force),
    so the wait always runs to its end; 1 s still polls several times."""
    from infergate.migrate import cleanup

    monkeypatch.setattr(cleanup, "FINALIZER_WAIT_S", 1.0)


def test_cleanup_refuses_while_another_namespace_uses_the_preview_crds(
        migrate: Any, cluster: KubeCluster, kubectl: Any, short_finalizer_wait: None) -> None:
    done, other = new_namespace(cluster, "migrated"), new_namespace(cluster, "still-preview")
    kubectl.run("apply", "-n", other, "-f", str(TESTDATA / "preview-stack.yaml"))
    kubectl.run("apply", "-n", done, "-f", "-", input=json.dumps({
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferenceModel",
        "metadata": {"name": "leftover"}, "spec": {"modelName": "x", "poolRef": {"name": "gone"}}}))
    refused = migrate("cleanup", "-n", done, "-o", "json")
    assert refused.returncode == 6, refused.out
    report = json.loads(refused.stdout)
    assert any("still-preview: 2 inferencemodels.inference.networking.x-k8s.io, 1 "
               "inferencepools.inference.networking.x-k8s.io" in r for r in report["refused"]), report
    assert cluster.get(CRDS, None, X_POOLS) is not None
    assert cluster.get(PREVIEW_MODELS, done, "leftover") is not None  # nothing deleted when refused

    forced = migrate("cleanup", "-n", done, "--force", "-o", "json")
    assert forced.returncode == 0, forced.out
    assert cluster.get(CRDS, None, X_POOLS) is None and cluster.get(CRDS, None, X_MODELS) is None
    # the blast radius the refusal warned about: the other namespace's objects went with the CRDs
    assert kubectl.run("get", X_POOLS, "-n", other, check=False).returncode != 0


def test_a_finalizer_without_a_controller_is_reported_and_blocks_crd_deletion(
        migrate: Any, cluster: KubeCluster, kubectl: Any, short_finalizer_wait: None) -> None:
    ns = new_namespace(cluster, "fin")
    kubectl.run("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferenceModel",
        "metadata": {"name": "held", "finalizers": ["example.com/no-controller"]},
        "spec": {"modelName": "x", "poolRef": {"name": "gone"}}}))
    result = migrate("cleanup", "-A", "-o", "json")
    assert result.returncode == 6, result.out
    report = json.loads(result.stdout)
    assert any("held" in f and "example.com/no-controller" in f for f in report["finalizers"]), report
    assert cluster.get(CRDS, None, X_MODELS) is not None
    kubectl.run("patch", "-n", ns, f"{X_MODELS}/held", "--type", "merge", "-p", '{"metadata":{"finalizers":null}}')
    result = migrate("cleanup", "-A", "-o", "json")
    assert result.returncode == 0, result.out
    assert cluster.get(CRDS, None, X_MODELS) is None


def test_crd_deleted_before_helm_uninstall_is_recovered(migrate: Any, cluster: KubeCluster, kubectl: Any,
                                                        helm: Any) -> None:
    # migration.md §9 case 8a: the wrong order leaves the release's EPP orphaned
    ns = new_namespace(cluster, "orphan")
    helm.run("install", "llama-preview", str(CHARTS / "preview-pool"), "-n", ns)
    kubectl.run("delete", "crd", X_POOLS)
    check = migrate("check", "-n", ns, "-o", "json")
    assert any(f["kind"] == "HelmRelease" for f in json.loads(check.stdout)["findings"]), check.out
    result = migrate("cleanup", "-n", ns, "-o", "json")
    assert result.returncode == 0, result.out
    actions = json.loads(result.stdout)["actions"]
    assert any(a.startswith(f"re-installed CustomResourceDefinition {X_POOLS}") for a in actions), actions
    assert f"helm uninstall llama-preview -n {ns}" in actions
    assert cluster.get(DEPLOYMENTS, ns, "llama-preview-epp") is None
    assert json.loads(helm.run("list", "-n", ns, "-o", "json").stdout) == [], actions
    assert cluster.get(CRDS, None, X_POOLS) is None


def test_simple_path_with_helm_uninstalls_the_preview_release_and_installs_the_ga_chart(
            migrate: Any, cluster: KubeCluster, kubectl: Any, helm: Any, status_writers: Any) -> None:
    ns = new_namespace(cluster, "helm")
    helm.run("install", "llama-preview", str(CHARTS / "preview-pool"), "-n", ns)
    kubectl.run("apply", "-n", ns, "-f", str(TESTDATA / "route-to-helm-pool.yaml"))
    status_writers(ns)
    plan = json.loads(migrate("plan", "-n", ns, "--path", "simple", "--chart", str(CHARTS / "inferencepool-v1"),
                              "--chart-version", "", "-o", "json").stdout)
    (pool,) = plan["pools"]
    assert (pool["install"], pool["previewRelease"], pool["ga"]) == ("helm", "llama-preview", "llama-ga")
    assert ["inferencePool.modelServers.matchLabels.app", "vllm-llama3-8b-instruct"] in pool["chart"]["sets"]
    # the preview pool's failure mode is kept, whatever the chart's default
    assert ["inferenceExtension.failureMode", "FailClose"] in pool["chart"]["sets"]
    result = migrate("run", "-n", ns, "--path", "simple", "--chart", str(CHARTS / "inferencepool-v1"),
                     "--chart-version", "", "--probes", "0", "--ready-timeout", "5", "-o", "json")
    assert result.returncode == 0, result.out
    # --probes 0 sends no traffic: nothing listens at the Gateway's address here
    assert json.loads(result.stdout).get("downtime") is None, result.out
    steps = {s["step"]: s["detail"] for s in json.loads(result.stdout)["steps"]}
    assert "helm uninstall llama-preview" in steps["remove-preview"]
    releases = {r["name"]: r["chart"] for r in json.loads(helm.run("list", "-n", ns, "-o", "json").stdout)}
    assert releases == {"llama-ga": "inferencepool-1.0.0"}
    ga = cluster.get(GA_POOLS, ns, "llama-ga")
    assert ga["spec"]["selector"]["matchLabels"] == {"app": "vllm-llama3-8b-instruct"}
    assert cluster.get(PREVIEW_POOLS, ns, "llama-preview") is None
    # the preview CRDs went last, after the release that used them
    assert cluster.get(CRDS, None, X_POOLS) is None
    route = cluster.get(HTTPROUTES, ns, "llm-route")
    assert {r["group"] for rule in route["spec"]["rules"] for r in rule["backendRefs"]} == {
        "inference.networking.k8s.io"}


def test_both_pool_crds_installed_counts_per_group(migrate: Any, cluster: KubeCluster, kubectl: Any) -> None:
    # migration.md §9 case 1: v1.0.0's bundle re-ships the x-k8s pool CRD (xinfpool) next to v1 (infpool)
    ns = new_namespace(cluster, "both")
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "config" / "crd" / "ga.yaml"))
    kubectl.run("wait", "--for=condition=Established", "crd/inferencepools.inference.networking.k8s.io")
    # the ambiguity itself: the bare plural resolves to one group only
    bare = kubectl.run("get", "inferencepools", "-n", ns, check=False)
    assert bare.returncode == 0 and "infpool" not in bare.out
    kubectl.run("apply", "-n", ns, "-f", "-", input="\n---\n".join(json.dumps(o) for o in [
        {"apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferencePool", "metadata": {"name": "vllm"},
         "spec": {"selector": {"app": "vllm"}, "targetPortNumber": 8000, "extensionRef": {"name": "vllm-epp"}}},
        {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool", "metadata": {"name": "vllm"},
         "spec": {"selector": {"matchLabels": {"app": "vllm"}}, "targetPorts": [{"number": 8000}],
                  "endpointPickerRef": {"name": "vllm-epp", "port": {"number": 9002}}}}]))
    data = json.loads(migrate("check", "-n", ns, "-o", "json", "--no-helm").stdout)
    assert [(c["resource"], c["count"]) for c in data["counts"] if c["namespace"] == ns] == [
        ("inferencepools.inference.networking.x-k8s.io", 1)]
    assert data["ga"] == [{"resource": "inferencepools.inference.networking.k8s.io", "namespace": ns, "count": 1}]
    crds = {c["name"]: c for c in data["crds"]}
    assert crds[X_POOLS]["shortNames"] == ["xinfpool"] and crds[X_POOLS]["bundleVersion"] == "v1.0.0"
    assert crds["inferencepools.inference.networking.k8s.io"]["shortNames"] == ["infpool"]
    assert cluster.get(PREVIEW_POOLS, ns, "vllm") is not None and cluster.get(GA_POOLS, ns, "vllm") is not None


def test_a_chart_that_cannot_be_pulled_stops_the_run_before_any_change(
        migrate: Any, cluster: KubeCluster, kubectl: Any, helm: Any) -> None:
    # migration.md §9 case 9: the chart (version) is absent from the registry
    ns = new_namespace(cluster, "nochart")
    helm.run("install", "llama-preview", str(CHARTS / "preview-pool"), "-n", ns)
    kubectl.run("apply", "-n", ns, "-f", str(TESTDATA / "route-to-helm-pool.yaml"))
    result = migrate("run", "-n", ns, "--path", "simple", "--chart", str(CHARTS / "does-not-exist"),
                     "--chart-version", "", "--probes", "0", "-o", "json")
    assert result.returncode == 1, result.out
    report = json.loads(result.stdout)
    assert report["steps"][-1]["step"] == "preflight" and "does-not-exist" in report["message"]
    # an OCI registry that cannot be reached (a closed loopback port) names the local way out
    registry = f"oci://127.0.0.1:{free_port()}/charts/inferencepool"
    result = migrate("run", "-n", ns, "--path", "simple", "--chart", registry, "--probes", "0", "-o", "json")
    assert result.returncode == 1, result.out
    message = json.loads(result.stdout)["message"]
    assert registry in message and "--chart charts/inferencepool --chart-version ''" in message
    assert cluster.get(PREVIEW_POOLS, ns, "llama-preview") is not None
    assert [r["name"] for r in json.loads(helm.run("list", "-n", ns, "-o", "json").stdout)] == ["llama-preview"]


def test_a_ga_release_name_taken_in_another_namespace_is_refused(
        migrate: Any, cluster: KubeCluster, kubectl: Any, helm: Any) -> None:
    # migration.md §9 case 9: the chart's cluster-scoped <release>-epp objects would collide
    ns, other = new_namespace(cluster, "mine"), new_namespace(cluster, "theirs")
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "config" / "crd" / "ga.yaml"))
    kubectl.run("wait", "--for=condition=Established", "crd/inferencepools.inference.networking.k8s.io")
    helm.run("install", "llama-ga", str(CHARTS / "inferencepool-v1"), "-n", other,
             "--set", "inferencePool.modelServers.matchLabels.app=x")
    helm.run("install", "llama-preview", str(CHARTS / "preview-pool"), "-n", ns)
    kubectl.run("apply", "-n", ns, "-f", str(TESTDATA / "route-to-helm-pool.yaml"))
    result = migrate("run", "-n", ns, "--chart", str(CHARTS / "inferencepool-v1"), "--chart-version", "",
                     "--probes", "0", "-o", "json")
    assert result.returncode == 1, result.out
    assert "exists in namespace theirs" in json.loads(result.stdout)["message"]
    assert cluster.get(GA_POOLS, ns, "llama-ga") is None


def test_the_preview_releases_provider_is_kept(migrate: Any, cluster: KubeCluster, kubectl: Any, helm: Any) -> None:
    # migration.md §9 case 9: provider.name left unset for the GA release on GKE
    ns = new_namespace(cluster, "gke")
    helm.run("install", "llama-preview", str(CHARTS / "preview-pool"), "-n", ns, "--set", "provider.name=gke")
    kubectl.run("apply", "-n", ns, "-f", str(TESTDATA / "route-to-helm-pool.yaml"))
    args = ("run", "-n", ns, "--chart", str(CHARTS / "inferencepool-v1"), "--chart-version", "", "--probes", "0",
            "-o", "json")
    refused = migrate(*args)
    assert refused.returncode == 1 and "--provider gke" in json.loads(refused.stdout)["message"], refused.out
    accepted = migrate(*args, "--provider", "gke", "--stop-after", "preflight")
    assert accepted.returncode == 0, accepted.out
    sets = json.loads(migrate("plan", "-n", ns, "-o", "json").stdout)["pools"][0]["chart"]["sets"]
    assert ["provider.name", "gke"] in sets
