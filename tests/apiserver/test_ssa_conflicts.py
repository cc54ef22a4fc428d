"""Server-side apply conflicts between Apply field managers, as the real kube-apiserver
reports them: unit tests of the pure functions in patch.py, the 409 Status over HTTP, and
the real kubectl and helm against the embedded server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from infergate.apiserver.patch import (
    ApplyConflict,
    apply_conflicts,
    conflict_message,
    field_path,
    leaf_paths,
    record_update_manager,
    server_side_apply,
)

from ..support.clitool import CliTool

CHARTS_DIR = Path(__file__).resolve().parent / "charts"
APPLY = "application/apply-patch+yaml"


def _owners(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["manager"]: m["fieldsV1"] for m in obj["metadata"]["managedFields"] if m["operation"] == "Apply"}


def _helm_deploy(replicas: int = 1, image: str = "a:1") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"app.kubernetes.io/name": "d"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}


# ---------------------------------------------------------------------- pure functions

def test_changing_a_field_another_apply_manager_owns_is_a_conflict() -> None:
    live = server_side_apply(None, _helm_deploy(), "helm", "apps/v1")
    config = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 3}}
    with pytest.raises(ApplyConflict) as info:
        server_side_apply(live, config, "kubectl", "apps/v1")
    assert info.value.conflicts == [("helm", ("spec", "replicas"))]
    assert str(info.value) == 'Apply failed with 1 conflict: conflict with "helm": .spec.replicas'
    assert info.value.causes() == [{"reason": "FieldManagerConflict", "message": 'conflict with "helm"',
                                    "field": ".spec.replicas"}]


def test_atomic_lists_labels_and_several_managers_in_the_message() -> None:
    live = server_side_apply(None, _helm_deploy(), "helm", "apps/v1")
    live = server_side_apply(live, {"metadata": {"name": "d"}, "spec": {"paused": False}}, "argo", "apps/v1")
    config = {"metadata": {"name": "d", "labels": {"app.kubernetes.io/name": "other"}},
              "spec": {"paused": True, "template": {"spec": {"containers": [{"name": "c", "image": "b:2"}]}}}}
    with pytest.raises(ApplyConflict) as info:
        server_side_apply(live, config, "kubectl", "apps/v1")
    assert info.value.conflicts == [("argo", ("spec", "paused")),
                                    ("helm", ("metadata", "labels", "app.kubernetes.io/name")),
                                    ("helm", ("spec", "template", "spec", "containers"))]
    assert str(info.value) == (
        'Apply failed with 3 conflicts: conflicts with "argo":\n- .spec.paused\n'
        'conflicts with "helm":\n- .metadata.labels.app.kubernetes.io/name\n- .spec.template.spec.containers')


def test_same_value_is_shared_ownership_and_unowned_or_unmentioned_fields_are_free() -> None:
    live = server_side_apply(None, _helm_deploy(replicas=2), "helm", "apps/v1")
    shared = server_side_apply(live, {"metadata": {"name": "d"}, "spec": {"replicas": 2, "paused": True}},
                               "kubectl", "apps/v1")
    owners = _owners(shared)
    assert owners["helm"]["f:spec"]["f:replicas"] == {}
    assert owners["kubectl"] == {"f:spec": {"f:replicas": {}, "f:paused": {}}}
    assert shared["spec"]["paused"] is True
    # kubectl stops setting the shared field: helm still owns it, so the value stays
    dropped = server_side_apply(shared, {"metadata": {"name": "d"}, "spec": {"paused": True}}, "kubectl", "apps/v1")
    assert dropped["spec"]["replicas"] == 2
    assert _owners(dropped)["kubectl"] == {"f:spec": {"f:paused": {}}}


def test_force_moves_the_conflicting_fields_and_drops_emptied_entries() -> None:
    live = server_side_apply(None, _helm_deploy(), "helm", "apps/v1")
    live = server_side_apply(live, {"metadata": {"name": "d"}, "spec": {"paused": False}}, "argo", "apps/v1")
    config = {"metadata": {"name": "d"}, "spec": {"replicas": 5, "paused": True}}
    forced = server_side_apply(live, config, "kubectl", "apps/v1", force=True)
    assert forced["spec"]["replicas"] == 5 and forced["spec"]["paused"] is True
    owners = _owners(forced)
    assert set(owners) == {"helm", "kubectl"}  # argo owned only .spec.paused
    assert "f:replicas" not in owners["helm"]["f:spec"]
    assert owners["helm"]["f:spec"]["f:template"] == {"f:spec": {"f:containers": {}}}
    assert owners["kubectl"] == {"f:spec": {"f:replicas": {}, "f:paused": {}}}
    # helm applies its old value again without force: kubectl's field now conflicts
    with pytest.raises(ApplyConflict, match=r'conflict with "kubectl": \.spec\.replicas'):
        server_side_apply(forced, _helm_deploy(), "helm", "apps/v1")


def test_update_managers_and_ignored_top_level_fields_never_conflict() -> None:
    live = server_side_apply(None, {"metadata": {"name": "d"}, "spec": {"replicas": 1}}, "helm", "apps/v1")
    record_update_manager(live, "kubectl-edit", "apps/v1")
    live["spec"]["replicas"] = 4  # the value an Update wrote; helm still owns the field
    again = server_side_apply(live, {"metadata": {"name": "d"}, "spec": {"replicas": 1}}, "helm", "apps/v1")
    assert again["spec"]["replicas"] == 1
    edits = {"metadata": {"name": "d"}, "status": {"ready": 1}}
    live = server_side_apply(again, edits, "helm", "apps/v1")
    config = {"metadata": {"name": "d"}, "status": {"ready": 2}}
    with pytest.raises(ApplyConflict):
        server_side_apply(live, config, "ctrl", "apps/v1")
    assert server_side_apply(live, config, "ctrl", "apps/v1", ignored=frozenset({"status"}))["status"] == {"ready": 2}


def test_empty_map_leaves_and_the_helpers() -> None:
    live = server_side_apply(None, {"metadata": {"name": "x"}, "spec": {"opts": {}}}, "helm", "v1")
    assert leaf_paths(_owners(live)["helm"]) == [("spec", "opts")]
    assert server_side_apply(live, {"metadata": {"name": "x"}, "spec": {"opts": {}}}, "kubectl", "v1")
    assert server_side_apply(live, {"metadata": {"name": "x"}, "spec": {"opts": {"a": 1}}}, "kubectl", "v1")
    with pytest.raises(ApplyConflict, match=r'"helm": \.spec\.opts$'):
        server_side_apply(live, {"metadata": {"name": "x"}, "spec": {"opts": 3}}, "kubectl", "v1")
    others = [{"manager": "helm", "operation": "Apply", "fieldsV1": {"f:a": {"f:b": {}, ".": {}}, "k:x": {}}}]
    assert apply_conflicts({"a": {"b": 1}}, {"a": {"b": 2}}, others) == [("helm", ("a", "b"))]
    assert apply_conflicts({"a": {"b": 1}}, {"a": {"b": 1}, "c": 1}, others) == []
    assert field_path(("metadata", "labels", "a.b/c")) == ".metadata.labels.a.b/c"
    assert conflict_message([("a", ("x",)), ("b", ("y",))]) == \
        'Apply failed with 2 conflicts: conflicts with "a":\n- .x\nconflicts with "b":\n- .y'


# ------------------------------------------------------------------------------- HTTP

def _apply(http: httpx.Client, path: str, obj: dict[str, Any], manager: str, **query: str) -> httpx.Response:
    return http.patch(path, content=json.dumps(obj), headers={"Content-Type": APPLY},
                      params={"fieldManager": manager, "force": "false", **query})


def test_http_conflict_status_dry_run_and_force(http: httpx.Client, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps/cm"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1", "b": "2"}}
    assert _apply(http, path, cm, "helm").status_code == 201
    before = http.get(path).json()
    change = {**cm, "data": {"a": "9", "c": "3"}}
    for query in ({}, {"dryRun": "All"}):
        response = _apply(http, path, change, "kubectl", **query)
        assert response.status_code == 409, response.text
        assert response.json() == {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Conflict",
            "code": 409, "message": 'Apply failed with 1 conflict: conflict with "helm": .data.a',
            "details": {"causes": [{"reason": "FieldManagerConflict", "message": 'conflict with "helm"',
                                    "field": ".data.a"}]}}
    assert http.get(path).json() == before  # nothing written
    dry = _apply(http, path, change, "kubectl", dryRun="All", force="true")
    assert dry.status_code == 200 and dry.json()["data"]["a"] == "9"
    assert http.get(path).json() == before
    forced = _apply(http, path, change, "kubectl", force="true")
    assert forced.status_code == 200, forced.text
    assert forced.json()["data"] == {"a": "9", "b": "2", "c": "3"}
    assert _owners(forced.json()) == {"helm": {"f:data": {"f:b": {}}}, "kubectl": {"f:data": {"f:a": {}, "f:c": {}}}}


def test_http_updates_do_not_take_ownership_and_status_applies_are_not_checked(
        http: httpx.Client, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/services/svc"
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "labels": {"team": "a"}},
           "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}}
    assert _apply(http, path, svc, "helm").status_code == 201
    merged = http.patch(path, params={"fieldManager": "editor"}, headers={"Content-Type": "application/merge-patch+json"},
                        content=json.dumps({"spec": {"selector": {"app": "y"}}}))
    assert merged.status_code == 200, merged.text  # an Update never conflicts
    assert ("editor", "Update") in [(m["manager"], m["operation"]) for m in merged.json()["metadata"]["managedFields"]]
    again = _apply(http, path, svc, "helm")  # helm still owns .spec.selector.app and sets it back
    assert again.status_code == 200 and again.json()["spec"]["selector"] == {"app": "x"}
    other = _apply(http, path, {**svc, "spec": {"selector": {"app": "z"}}}, "kubectl")
    assert other.status_code == 409 and other.json()["message"].endswith('"helm": .spec.selector.app')
    status = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
              "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}}
    with_status = _apply(http, path, {**svc, **status}, "helm")  # status is reset on the main resource
    assert with_status.status_code == 200
    other_status = {**svc, "status": {"loadBalancer": {"ingress": [{"ip": "10.9.9.9"}]}}}
    assert _apply(http, path, other_status, "kubectl").status_code == 200  # ... so it cannot conflict there
    lb = {"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}]}}
    # the status subresource takes only .status (its metadata changes are dropped): nothing to conflict with
    status["metadata"] = {"name": "svc", "labels": {"team": "b"}}
    applied = _apply(http, path + "/status", {**status, "status": lb}, "lb-controller")
    assert applied.status_code == 200, applied.text
    assert applied.json()["status"] == lb and applied.json()["metadata"]["labels"] == {"team": "a"}
    assert "lb-controller" not in [m["manager"] for m in applied.json()["metadata"]["managedFields"]]


def test_http_custom_resource_conflict(upstream_crds: list[Any], http: httpx.Client, namespace: str) -> None:
    path = f"/apis/inference.networking.k8s.io/v1/namespaces/{namespace}/inferencepools/p"
    pool = {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool", "metadata": {"name": "p"},
            "spec": {"selector": {"matchLabels": {"app": "vllm"}}, "targetPorts": [{"number": 8000}],
                     "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}}
    assert _apply(http, path, pool, "helm").status_code == 201
    changed = {**pool, "spec": {**pool["spec"], "targetPorts": [{"number": 8001}]}}
    response = _apply(http, path, changed, "kubectl")
    assert response.status_code == 409
    assert response.json()["message"] == 'Apply failed with 1 conflict: conflict with "helm": .spec.targetPorts'
    assert _apply(http, path, pool, "kubectl").status_code == 200  # same value: shared


# -------------------------------------------------------------------- real kubectl/helm

def _configmap(namespace: str, **data: str) -> str:
    lines = "".join(f"  {k}: {v!r}\n" for k, v in data.items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo-cm\n  namespace: {namespace}\ndata:\n{lines}"


def _managed(kubectl: CliTool, namespace: str, kind: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = kubectl("get", kind, name, "-n", namespace, "-o", "json", "--show-managed-fields").json()
    return obj


def test_kubectl_and_helm_conflicts(upstream_crds: list[Any], kubectl: CliTool, helm: CliTool,
                                    namespace: str) -> None:
    chart = str(CHARTS_DIR / "demo")
    helm("install", "demo", chart, "-n", namespace)
    before = _managed(kubectl, namespace, "configmap", "demo-cm")
    assert before["data"] == {"greeting": "hello"}
    service = _managed(kubectl, namespace, "service", "demo-epp")
    assert service["spec"]["ports"] == [{"name": "grpc", "port": 9002, "protocol": "TCP", "targetPort": 9002}]
    # the chart's own Service (its ports list defaulted by the server) applied by kubectl: same values, shared
    same_service = (f"apiVersion: v1\nkind: Service\nmetadata:\n  name: demo-epp\n  namespace: {namespace}\n"
                    "spec:\n  selector:\n    app: demo-epp\n  ports:\n  - name: grpc\n    port: 9002\n"
                    "    protocol: TCP\n")
    assert kubectl("apply", "--server-side", "-f", "-", input=same_service).stdout.strip() == \
        "service/demo-epp serverside-applied"
    assert set(_owners(_managed(kubectl, namespace, "service", "demo-epp"))) == {"helm", "kubectl"}

    refused = kubectl("apply", "--server-side", "-f", "-", input=_configmap(namespace, greeting="changed"),
                      check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith('error: Apply failed with 1 conflict: conflict with "helm": .data.greeting\n'
                                     "Please review the fields above--they currently have other managers.")
    dry = kubectl("apply", "--server-side", "--dry-run=server", "-f", "-",
                  input=_configmap(namespace, greeting="changed"), check=False)
    assert dry.returncode == 1 and 'conflict with "helm": .data.greeting' in dry.stderr
    assert _managed(kubectl, namespace, "configmap", "demo-cm") == before  # unchanged

    shared = kubectl("apply", "--server-side", "-f", "-", input=_configmap(namespace, greeting="hello", extra="x"))
    assert shared.stdout.strip() == "configmap/demo-cm serverside-applied"
    owners = _owners(_managed(kubectl, namespace, "configmap", "demo-cm"))
    assert owners["helm"]["f:data"] == {"f:greeting": {}}
    assert owners["kubectl"]["f:data"] == {"f:greeting": {}, "f:extra": {}}

    forced = kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                     input=_configmap(namespace, greeting="changed", extra="x"))
    assert forced.stdout.strip() == "configmap/demo-cm serverside-applied"
    yaml_out = kubectl("get", "configmap", "demo-cm", "-n", namespace, "-o", "yaml", "--show-managed-fields").stdout
    assert "greeting: changed" in yaml_out
    owners = _owners(_managed(kubectl, namespace, "configmap", "demo-cm"))
    assert "f:data" not in owners["helm"]
    assert owners["kubectl"]["f:data"] == {"f:greeting": {}, "f:extra": {}}

    upgrade = helm("upgrade", "demo", chart, "-n", namespace, "--set", "greeting=again", check=False)
    assert upgrade.returncode == 1
    assert ('Error: UPGRADE FAILED: conflict occurred while applying object '
            f'{namespace}/demo-cm /v1, Kind=ConfigMap: Apply failed with 1 conflict: '
            'conflict with "kubectl": .data.greeting') in upgrade.stderr
    assert _managed(kubectl, namespace, "configmap", "demo-cm")["data"]["greeting"] == "changed"
    taken = helm("upgrade", "demo", chart, "-n", namespace, "--set", "greeting=again", "--force-conflicts")
    assert "has been upgraded" in taken.stdout
    after = _managed(kubectl, namespace, "configmap", "demo-cm")
    assert after["data"] == {"greeting": "again", "extra": "x"}
    assert _owners(after)["kubectl"]["f:data"] == {"f:extra": {}}


def test_kubectl_managers_on_a_custom_resource(upstream_crds: list[Any], kubectl: CliTool, namespace: str) -> None:
    pool = (f"apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata:\n  name: p\n"
            f"  namespace: {namespace}\nspec:\n  selector:\n    matchLabels:\n      app: vllm\n"
            "  targetPorts:\n  - number: 8000\n  endpointPickerRef:\n    name: epp\n    port:\n      number: 9002\n")
    kubectl("apply", "--server-side", "--field-manager=team-a", "-f", "-", input=pool)
    refused = kubectl("apply", "--server-side", "--field-manager=team-b", "-f", "-",
                      input=pool.replace("app: vllm", "app: sglang"), check=False)
    assert refused.returncode == 1
    assert 'Apply failed with 1 conflict: conflict with "team-a": .spec.selector.matchLabels.app' in refused.stderr
    unowned = pool.replace("  targetPorts:\n  - number: 8000\n", "").replace(
        "  endpointPickerRef:", "  targetPorts:\n  - number: 8000\n  endpointPickerRef:\n    failureMode: FailOpen")
    assert "serverside-applied" in kubectl("apply", "--server-side", "--field-manager=team-b", "-f", "-",
                                           input=unowned).stdout
    obj = _managed(kubectl, namespace, "inferencepool", "p")
    assert obj["spec"]["selector"]["matchLabels"]["app"] == "vllm"
    assert obj["spec"]["endpointPickerRef"]["failureMode"] == "FailOpen"
