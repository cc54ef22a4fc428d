"""`infergate migrate check` against the embedded API server, with the real kubectl and helm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TESTDATA = Path(__file__).resolve().parent / "testdata"
REPO = Path(__file__).resolve().parents[2]
Migrate = Tool = Any


def test_preview_stack_needs_migration_counts_per_group_and_namespace(migrate: Migrate, preview_stack: str) -> None:
    result = migrate("check", "-n", preview_stack, "-o", "json", "--no-helm")
    assert result.returncode == 3, result.out
    data = json.loads(result.stdout)
    assert data["migrationNeeded"] is True
    counts = {(c["resource"], c["kind"]): c["count"] for c in data["counts"] if c["namespace"] == preview_stack}
    assert counts == {
        ("inferencepools.inference.networking.x-k8s.io", "InferencePool"): 1,
        ("inferencemodels.inference.networking.x-k8s.io", "InferenceModel"): 2,
        ("httproutes.gateway.networking.k8s.io -> inferencepools.inference.networking.x-k8s.io", "HTTPRoute"): 1,
        ("deployments.apps (v0.3.0 EPP)", "EPPDeployment"): 1,
    }
    # never the ambiguous bare plural
    assert all(c["resource"] != "inferencepools" for c in data["counts"])


def test_empty_namespace_needs_nothing(migrate: Migrate, namespace: str) -> None:
    result = migrate("check", "-n", namespace, "-o", "yaml", "--no-helm")
    assert result.returncode == 0, result.out
    assert "migrationNeeded: false" in result.stdout


def test_files_are_scanned(migrate: Migrate, namespace: str, tmp_path: Path) -> None:
    result = migrate("check", "--no-cluster", "-f", str(TESTDATA / "preview-stack.yaml"), "-o", "json")
    assert result.returncode == 3, result.out
    kinds = sorted(f["kind"] for f in json.loads(result.stdout)["findings"])
    assert kinds == ["EPPDeployment", "HTTPRoute", "InferenceModel", "InferenceModel", "InferencePool"]
    assert all(f["source"].startswith("file:") for f in json.loads(result.stdout)["findings"])
    clean = tmp_path / "ga.yaml"
    clean.write_text((REPO / "config" / "crd" / "gateway-api.yaml").read_text())
    assert migrate("check", "--no-cluster", "-f", str(clean)).returncode == 0


def test_helm_release_with_a_preview_pool_is_found(migrate: Migrate, helm: Tool, namespace: str) -> None:
    helm.run("install", "llama-preview", str(TESTDATA / "charts" / "preview-pool"), "-n", namespace)
    result = migrate("check", "-n", namespace, "-o", "json")
    assert result.returncode == 3, result.out
    releases = [f for f in json.loads(result.stdout)["findings"] if f["kind"] == "HelmRelease"]
    assert [(r["namespace"], r["name"]) for r in releases] == [(namespace, "llama-preview")]
    assert "InferencePool llama-preview" in releases[0]["detail"]


def test_a_v1_epp_without_pool_group_for_a_preview_pool_is_flagged(migrate: Migrate, kubectl: Tool,
                                                                   preview_stack: str) -> None:
    # migration.md §9 case 9: the v1.0.0 chart with the preview apiVersion passes no --pool-group
    kubectl.run("apply", "-n", preview_stack, "-f", "-", input=json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "chart-epp"},
        "spec": {"selector": {"matchLabels": {"app": "chart-epp"}}, "template": {
            "metadata": {"labels": {"app": "chart-epp"}},
            "spec": {"containers": [{"name": "epp", "image": "epp:v1.0.0", "args": [
                "--pool-name", "vllm-llama3-8b-instruct-preview", "--pool-namespace", preview_stack]}]}}}}))
    data = json.loads(migrate("check", "-n", preview_stack, "-o", "json", "--no-helm").stdout)
    (finding,) = [f for f in data["findings"] if f["name"] == "chart-epp"]
    assert "without --pool-group" in finding["detail"], finding
