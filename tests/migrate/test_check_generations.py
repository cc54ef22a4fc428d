"""`migrate check` reports each kind of pending move separately, and `migrate crds-check`
refuses GIE v1.5+ CRDs while preview InferencePools remain (real kubectl and helm against the
module's embedded API server)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infergate.migrate.census import Census, Finding
from infergate.migrate.generations import (
    CHART_VALUES_V15,
    CRDS_V15_BLOCKED,
    PREVIEW_TO_GA,
    TARGET_MODELS_REWRITE,
    XK8S_TO_LLMD,
    chart_default_failure_mode,
    classify_generation,
    crd_blocker,
    is_inferencepool_chart,
    pending_moves,
)
from infergate.migrate.resources import CRDS, PREVIEW_POOLS

from .conftest import REPO, TESTDATA, load_objects

Migrate = Tool = Any
GEN = TESTDATA / "generations"


@pytest.fixture(scope="module", autouse=True)
def _later_crds(apiserver: Any) -> None:
    """GIE v1.5's x-k8s InferenceObjective / InferenceModelRewrite CRDs and the GA pool next to the preview ones."""
    from infergate.migrate.cluster import ClusterTarget, KubeCluster

    cluster = KubeCluster.connect(ClusterTarget(str(apiserver.kubeconfig_path)))
    try:
        for crd in [*load_objects(REPO / "config" / "crd" / "gie-v1.5.yaml"),
                    *load_objects(REPO / "config" / "crd" / "gie-v1.6.yaml")]:
            cluster.apply(CRDS, crd)
    finally:
        cluster.close()


# -- objects ------------------------------------------------------------------------------------------


def test_each_object_is_classified_by_its_move() -> None:
    docs = load_objects(GEN / "v1.0-objects.yaml") + load_objects(GEN / "split-model.yaml")
    found = [classify_generation(d, "file:x") for d in docs]
    assert [(f.kind, f.name) for f in found if f] == [
        ("XK8sInferenceObjective", "food-review"), ("XK8sInferenceObjective", "batch"),
        ("XK8sInferenceModelRewrite", "food-review-canary"), ("TargetModelsSplit", "canary")]
    assert "canary-v1 80, canary-v2 20" in found[3].detail  # type: ignore[union-attr]


def test_one_target_or_llmd_objects_are_no_move() -> None:
    one = {"apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferenceModel",
           "metadata": {"name": "m"}, "spec": {"targetModels": [{"name": "a", "weight": 1}]}}
    same = {**one, "spec": {"targetModels": [{"name": "a", "weight": 1}, {"name": "a", "weight": 2}]}}
    llmd = {"apiVersion": "llm-d.ai/v1alpha2", "kind": "InferenceObjective", "metadata": {"name": "o"}}
    assert [classify_generation(o, "cluster") for o in (one, same, llmd)] == [None, None, None]


def test_moves_are_counted_separately_and_the_blocker_names_the_pools() -> None:
    pool = Finding("cluster", "InferencePool", PREVIEW_POOLS.group, "a", "p1")
    blocker = crd_blocker([pool, Finding("cluster", "InferencePool", PREVIEW_POOLS.group, "b", "p0")])
    assert blocker is not None and "a/p1, b/p0" in blocker.detail
    assert crd_blocker([]) is None
    census = Census((pool, blocker,
                     Finding("cluster", "XK8sInferenceObjective", "x", "a", "o"),
                     Finding("helm", "ChartValuesV1.0", "", "a", "r"),
                     Finding("cluster", "TargetModelsSplit", "x", "a", "m"),
                     Finding("cluster", "CustomResourceDefinition", "", "", "crd")))
    assert pending_moves(census) == {CHART_VALUES_V15: 1, CRDS_V15_BLOCKED: 1, PREVIEW_TO_GA: 1,
                                     TARGET_MODELS_REWRITE: 1, XK8S_TO_LLMD: 1}


def test_inferencepool_chart_names() -> None:
    assert is_inferencepool_chart("inferencepool-v1.0.0")
    assert is_inferencepool_chart("inferencepool-1.0.0")
    assert not is_inferencepool_chart("inferencepool-gateway-1.0.0")
    assert not is_inferencepool_chart("vllm-1.0.0")


# -- against the API server ---------------------------------------------------------------------------


def test_check_reports_each_move_and_the_crd_blocker(migrate: Migrate, kubectl: Tool, helm: Tool,
                                                     preview_stack: str) -> None:
    ns = preview_stack
    kubectl.run("apply", "-n", ns, "-f", str(GEN / "v1.0-objects.yaml"), "-f", str(GEN / "split-model.yaml"))
    helm.run("install", "pool-v1", str(TESTDATA / "charts" / "inferencepool-v1"), "-n", ns,
             "-f", str(TESTDATA / "chart-values" / "v1.0-minimal.in.yaml"))
    result = migrate("check", "-n", ns, "-o", "json")
    assert result.returncode == 3, result.out
    data = json.loads(result.stdout)
    moves = {m["move"]: m["count"] for m in data["moves"]}
    assert moves[XK8S_TO_LLMD] == 3
    assert moves[TARGET_MODELS_REWRITE] == 1
    assert moves[CHART_VALUES_V15] == 1
    assert moves[CRDS_V15_BLOCKED] == 1
    assert moves[PREVIEW_TO_GA] >= 4
    status = {m["move"]: m["status"] for m in data["moves"]}
    assert status == {XK8S_TO_LLMD: "available", TARGET_MODELS_REWRITE: "available", CHART_VALUES_V15: "available",
                      CRDS_V15_BLOCKED: "pending", PREVIEW_TO_GA: "pending"}
    chart = next(f for f in data["findings"] if f["kind"] == "ChartValuesV1.0")
    assert chart["name"] == "pool-v1" and "inferenceExtension.image.hub" in chart["detail"]
    assert "--unset-failure-mode" not in chart["detail"]  # upstream's v1.0 chart defaulted to FailClose
    assert any(f"{ns}/vllm-llama3-8b-instruct-preview" in b for b in data["blocking"])
    table = migrate("check", "-n", ns)
    assert "Moves" in table.stdout and "x-k8s-to-llm-d" in table.stdout and "available" in table.stdout
    assert "BLOCKING (crds-v1.5-blocked)" in table.stdout


def test_llmd_move_is_available_on_v10_and_pending_once_llmd_is_installed(
        migrate: Migrate, kubectl: Tool, namespace: str, cluster: Any) -> None:
    """A v1.0 installation (x-k8s objectives) is fine: the move is available, exit 0 (--strict: 3).
    With the llm-d.ai CRDs installed an EPP ignores the x-k8s objects: pending, exit 3."""
    kubectl.run("apply", "-n", namespace, "-f", str(GEN / "v1.0-objects.yaml"))
    result = migrate("check", "-n", namespace, "-o", "json", "--no-helm")
    assert result.returncode == 0, result.out
    data = json.loads(result.stdout)
    mine = [f for f in data["findings"] if f["namespace"] == namespace]
    assert sorted(f["kind"] for f in mine) == ["XK8sInferenceModelRewrite", "XK8sInferenceObjective",
                                                "XK8sInferenceObjective"]
    assert all(f["optional"] for f in mine)
    assert "optional moves available: x-k8s-to-llm-d" in migrate("check", "-n", namespace, "--no-helm").stdout
    assert migrate("check", "-n", namespace, "--no-helm", "--strict").returncode == 3
    for crd in load_objects(REPO / "config" / "crd" / "llm-d.yaml"):
        cluster.apply(CRDS, crd)
    result = migrate("check", "-n", namespace, "-o", "json", "--no-helm")
    assert result.returncode == 3, result.out
    data = json.loads(result.stdout)
    assert [m["status"] for m in data["moves"]] == ["pending"]
    assert all("ignores this object" in f["detail"] for f in data["findings"] if f["namespace"] == namespace)


def test_files_report_the_later_moves(migrate: Migrate) -> None:
    result = migrate("check", "--no-cluster", "-f", str(GEN), "-o", "json")
    assert result.returncode == 3, result.out
    data = json.loads(result.stdout)
    assert {m["move"]: m["count"] for m in data["moves"]} == {XK8S_TO_LLMD: 3, TARGET_MODELS_REWRITE: 1,
                                                               PREVIEW_TO_GA: 1}
    assert data["blocking"] == []  # the blocker is about a cluster's CRDs


def test_crds_check_refuses_v15_while_preview_pools_remain(migrate: Migrate, kubectl: Tool,
                                                           preview_stack: str, cluster: Any) -> None:
    refused = migrate("crds-check", "--to", "v1.5")
    assert refused.returncode == 6, refused.out
    assert f"{preview_stack}/vllm-llama3-8b-instruct-preview" in refused.stderr
    assert migrate("crds-check", "--to", "v1.0").returncode == 0  # v1.0 still serves the preview pool
    for pool in cluster.list(PREVIEW_POOLS, None):  # every namespace of this module's server
        cluster.delete(PREVIEW_POOLS, pool["metadata"]["namespace"], pool["metadata"]["name"])
    ok = migrate("crds-check")
    assert ok.returncode == 0, ok.out
    assert "ok: no preview InferencePool blocks the GIE current CRDs" in ok.stdout


def test_malformed_split_weights_in_files_do_not_crash() -> None:
    model = {"apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferenceModel",
             "metadata": {"name": "m"}, "spec": {"targetModels": [{"name": "a", "weight": "x"}, {"name": "b"},
                                                                  "not-a-map", {"name": "c", "weight": True}]}}
    found = classify_generation(model, "file:x")
    assert found is not None and "a 1, b 1, c 1" in found.detail


@pytest.mark.parametrize(("chart", "mode"), [
    ("inferencepool-v1.0.0", "FailClose"), ("inferencepool-v1.3.1", "FailClose"),
    ("inferencepool-v1.4.0", "FailOpen"), ("inferencepool-v1.6.0", "FailOpen"),
    ("inferencepool-0.1.0", "FailOpen"),  # infergate's charts/inferencepool
    ("inferencepool-1.0.0", "FailClose"), ("inferencepool", "FailClose"), ("inferencepool-vX", "FailClose"),
])
def test_the_chart_s_default_failure_mode_from_helm_list_s_chart_column(chart: str, mode: str) -> None:
    assert chart_default_failure_mode(chart) == mode
