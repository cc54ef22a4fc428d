"""CRD lifecycle with the real kubectl: applying the upstream CRDs makes their kinds appear
in discovery (short names, categories, Established), deleting them removes the kinds and
every object of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("apiserver-crd_lifecycle")]


def pool_manifest(name: str) -> str:
    return (f"apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata:\n  name: {name}\nspec:\n"
            "  selector:\n    matchLabels: {app: vllm}\n  targetPorts: [{number: 8000}]\n"
            "  endpointPickerRef: {name: epp, port: {number: 9002}}\n")


def test_apply_then_delete_upstream_crds(upstream_crds, kubectl, module_kubectl, http, namespace,
                                         tmp_path: Path) -> None:
    crd = kubectl("get", "crd", "inferencepools.inference.networking.k8s.io", "-o", "json").json()
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert crd["status"]["acceptedNames"]["shortNames"] == ["infpool"]
    assert crd["status"]["storedVersions"] == ["v1"]
    waited = kubectl("wait", "--for=condition=Established", "crd/gateways.gateway.networking.k8s.io", "--timeout=10s")
    assert "condition met" in waited.stdout

    kubectl("apply", "-n", namespace, "-f", "-", input=pool_manifest("doomed"))
    kubectl("apply", "-n", namespace, "-f", "-", input=(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n"
        "  gatewayClassName: x\n  listeners: [{name: http, protocol: HTTP, port: 80}]\n"))
    # the Gateway API CRDs carry the category "gateway-api"
    category = kubectl("get", "gateway-api", "-n", namespace, "-o", "name").stdout.split()
    assert "gateway.gateway.networking.k8s.io/gw" in category

    args = [arg for f in upstream_crds for arg in ("-f", str(f))]
    deleted = module_kubectl("delete", *args, timeout=60)
    for f in upstream_crds:
        assert re.search(rf'customresourcedefinition.apiextensions.k8s.io "{f.name.split("_")[1][:-5]}.'
                         rf'{f.name.split("_")[0]}" deleted', deleted.stdout), deleted.stdout
    assert http.get(f"/apis/inference.networking.k8s.io/v1/namespaces/{namespace}/inferencepools/doomed"
                    ).status_code == 404
    # a fresh discovery cache (a stale one keeps the kind for a while, as with a real cluster)
    missing = kubectl("--cache-dir", str(tmp_path / "fresh-cache"), "get", "infpool", "-n", namespace, check=False)
    assert missing.returncode == 1
    assert 'error: the server doesn\'t have a resource type "infpool"' in missing.stderr
    assert "inference.networking.k8s.io" not in kubectl("--cache-dir", str(tmp_path / "cache2"), "api-resources").stdout

    # re-applying brings the kinds back, empty
    module_kubectl("apply", *args)
    empty = kubectl("get", "infpool", "-n", namespace)
    assert "No resources found" in empty.stderr


def test_conflicting_crd_names_are_not_accepted(kubectl, http) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "things.lifecycle.infergate.io"},
           "spec": {"group": "lifecycle.infergate.io", "scope": "Cluster",
                    "names": {"plural": "things", "kind": "Thing", "shortNames": ["thg"]},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object",
                                                                 "x-kubernetes-preserve-unknown-fields": True}}}]}}
    assert http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd).status_code == 201
    clash = {**crd, "metadata": {"name": "others.lifecycle.infergate.io"},
             "spec": {**crd["spec"], "names": {"plural": "others", "kind": "Thing"}}}
    created = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=clash).json()
    conditions = {c["type"]: (c["status"], c["reason"]) for c in created["status"]["conditions"]}
    assert conditions["NamesAccepted"] == ("False", "NameConflict")
    assert conditions["Established"][0] == "False"
    assert http.get("/apis/lifecycle.infergate.io/v1/others").status_code == 404
    made = kubectl("apply", "-f", "-", input="apiVersion: lifecycle.infergate.io/v1\nkind: Thing\nmetadata:\n"
                   "  name: one\nextra: {free: form}\n")
    assert made.stdout.strip() == "thing.lifecycle.infergate.io/one created"
    assert kubectl("get", "thg", "one", "-o", "jsonpath={.extra.free}").stdout == "form"
    bad_name = {**crd, "metadata": {"name": "wrong"}}
    invalid = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=bad_name)
    assert invalid.status_code == 422
    assert invalid.json()["details"]["causes"][0]["field"] == "metadata.name"
