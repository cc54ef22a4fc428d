"""``kubectl explain`` (OpenAPI v3) for custom resources, with the real kubectl v1.37.

kubectl explain maps the resource to ``apis/G/V`` in the ``/openapi/v3`` index, reads the GVK
from an operation on the resource's path, and prints the ``components.schemas`` entry
carrying that GVK. Listing CR group-versions in the index must not change how kubectl
applies and patches custom resources (merge patch, never strategic merge)."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("apiserver-explain")]


def field_line(text: str, name: str) -> str:
    """The FIELDS line of ``name`` (``name<TAB><type>[ -required-]``), stripped of indentation."""
    for line in text.splitlines():
        if line.strip().startswith(name + "\t"):
            return line.strip()
    raise AssertionError(f"no field line for {name!r} in:\n{text}")


def test_ga_inferencepool_field_path(upstream_crds, kubectl) -> None:
    out = kubectl("explain", "infpool.spec.endpointPickerRef").stdout
    assert out.startswith("GROUP:      inference.networking.k8s.io\nKIND:       InferencePool\nVERSION:    v1\n")
    assert "FIELD: endpointPickerRef <Object>" in out
    assert "EndpointPickerRef is a reference to the Endpoint Picker extension" in out
    assert field_line(out, "name") == "name\t<string> -required-"
    assert field_line(out, "failureMode") == "failureMode\t<string>"
    assert re.search(r"^\s*enum: FailOpen, FailClose$", out, re.M)
    assert field_line(out, "port") == "port\t<Object>"

    leaf = kubectl("explain", "infpool.spec.endpointPickerRef.failureMode").stdout
    assert "FIELD: failureMode <string>\nENUM:\n    FailOpen\n    FailClose\n" in leaf
    assert 'When unspecified, defaults to "FailClose".' in leaf

    top = kubectl("explain", "inferencepools.inference.networking.k8s.io.spec").stdout
    assert field_line(top, "targetPorts") == "targetPorts\t<[]Object> -required-"
    assert field_line(top, "selector") == "selector\t<Object> -required-"
    ports = kubectl("explain", "infpool.spec.targetPorts.number").stdout
    assert "FIELD: number <integer>" in ports


def test_preview_inferencepool_needs_its_full_name(upstream_crds, kubectl) -> None:
    out = kubectl("explain", "inferencepools.inference.networking.x-k8s.io.spec").stdout
    assert "GROUP:      inference.networking.x-k8s.io\n" in out and "VERSION:    v1alpha2\n" in out
    assert field_line(out, "extensionRef") == "extensionRef\t<Object> -required-"
    assert field_line(out, "targetPortNumber") == "targetPortNumber\t<integer> -required-"
    assert "endpointPickerRef" not in out
    ref = kubectl("explain", "inferencepools.inference.networking.x-k8s.io.spec.extensionRef").stdout
    assert field_line(ref, "portNumber") == "portNumber\t<integer>"
    assert re.search(r"^\s*enum: FailOpen, FailClose$", ref, re.M)


def test_resource_level_output_has_type_meta_and_object_meta(upstream_crds, kubectl) -> None:
    out = kubectl("explain", "infpool").stdout
    assert "DESCRIPTION:\n    InferencePool is the Schema for the InferencePools API." in out
    assert field_line(out, "apiVersion") == "apiVersion\t<string>"
    assert field_line(out, "kind") == "kind\t<string>"
    assert field_line(out, "metadata") == "metadata\t<ObjectMeta>"
    assert field_line(out, "spec") == "spec\t<Object> -required-"
    assert field_line(out, "status") == "status\t<Object>"
    meta = kubectl("explain", "infpool.metadata").stdout
    assert "FIELD: metadata <ObjectMeta>" in meta
    assert field_line(meta, "labels") == "labels\t<map[string]string>"
    assert field_line(meta, "ownerReferences") == "ownerReferences\t<[]OwnerReference>"
    owner = kubectl("explain", "infpool.metadata.ownerReferences").stdout
    assert field_line(owner, "uid") == "uid\t<string> -required-"


def test_gateway_api_kind(upstream_crds, kubectl) -> None:
    out = kubectl("explain", "gateways.spec.listeners").stdout
    assert "GROUP:      gateway.networking.k8s.io\nKIND:       Gateway\nVERSION:    v1\n" in out
    assert "FIELD: listeners <[]Object>" in out
    assert field_line(out, "port") == "port\t<integer> -required-"
    assert field_line(out, "protocol") == "protocol\t<string> -required-"
    assert field_line(out, "hostname") == "hostname\t<string>"
    route = kubectl("explain", "httproute.spec.rules.matches.path.type").stdout
    assert "KIND:       HTTPRoute" in route
    assert "FIELD: type <string>\nENUM:\n    Exact\n    PathPrefix\n    RegularExpression\n" in route
    beta = kubectl("explain", "gateways", "--api-version=gateway.networking.k8s.io/v1beta1").stdout
    assert "VERSION:    v1beta1" in beta


def test_recursive(upstream_crds, kubectl) -> None:
    out = kubectl("explain", "gtw.spec", "--recursive").stdout
    lines = out.splitlines()
    assert "  gatewayClassName\t<string> -required-" in lines
    assert "  listeners\t<[]Object> -required-" in lines
    assert "    allowedRoutes\t<Object>" in lines
    assert "        from\t<string>" in lines
    assert "        enum: All, Selector, Same" in lines
    assert "    port\t<integer> -required-" in lines
    # recursive output lists names only, no descriptions
    assert "Spec defines the desired state of Gateway." in out
    assert "GatewayClassName used for this Gateway" not in out


def test_unknown_field(upstream_crds, kubectl) -> None:
    missing = kubectl("explain", "infpool.spec.colour", check=False)
    assert missing.returncode == 1
    assert 'field "colour" does not exist' in missing.stderr


def test_documents_are_shaped_like_kube_apiserver(upstream_crds, http: httpx.Client) -> None:
    index = http.get("/openapi/v3").json()["paths"]
    for key in ("apis/inference.networking.k8s.io/v1", "apis/inference.networking.x-k8s.io/v1alpha2",
                "apis/gateway.networking.k8s.io/v1", "apis/gateway.networking.k8s.io/v1beta1",
                "api/v1", "apis/apiextensions.k8s.io/v1"):
        assert re.fullmatch(rf"/openapi/v3/{re.escape(key)}\?hash=[0-9A-F]{{128}}", index[key]["serverRelativeURL"])
    doc = http.get(index["apis/inference.networking.k8s.io/v1"]["serverRelativeURL"]).json()
    gvk = {"group": "inference.networking.k8s.io", "version": "v1", "kind": "InferencePool"}
    patch = doc["paths"]["/apis/inference.networking.k8s.io/v1/namespaces/{namespace}/inferencepools/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == gvk
    assert {p["name"] for p in patch["parameters"]} >= {"fieldValidation", "fieldManager", "force", "dryRun"}
    # like a real server: no strategic merge patch for custom resources
    assert set(patch["requestBody"]["content"]) == {"application/apply-patch+yaml", "application/json-patch+json",
                                                    "application/merge-patch+json"}
    listing = doc["paths"]["/apis/inference.networking.k8s.io/v1/namespaces/{namespace}/inferencepools"]["get"]
    assert listing["x-kubernetes-group-version-kind"] == gvk
    schema = doc["components"]["schemas"]["io.k8s.networking.inference.v1.InferencePool"]
    assert schema["x-kubernetes-group-version-kind"] == [gvk]
    assert schema["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in doc["components"]["schemas"]
    assert doc["components"]["schemas"]["io.k8s.networking.inference.v1.InferencePoolList"][
        "x-kubernetes-group-version-kind"] == [{**gvk, "kind": "InferencePoolList"}]
    preview = http.get(index["apis/inference.networking.x-k8s.io/v1alpha2"]["serverRelativeURL"]).json()
    assert "io.x-k8s.networking.inference.v1alpha2.InferencePool" in preview["components"]["schemas"]
    # every $ref resolves inside its own document
    for document in (doc, preview):
        refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document)))
        assert refs and refs <= set(document["components"]["schemas"])


def _crd(group: str, fields: dict[str, dict[str, object]]) -> dict[str, object]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"gadgets.{group}"},
            "spec": {"group": group, "scope": "Cluster",
                     "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "description": "Gadget is a test kind.", "properties": {
                             "spec": {"type": "object", "required": ["size"], "properties": fields}}}}}]}}


def test_index_follows_crd_changes(http: httpx.Client, kubectl) -> None:
    group = f"explain-{uuid.uuid4().hex[:6]}.infergate.io"
    key = f"apis/{group}/v1"
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    assert key not in http.get("/openapi/v3").json()["paths"]
    size = {"size": {"type": "integer", "description": "How big."}}
    assert http.post(crds, json=_crd(group, size)).status_code == 201
    before = http.get("/openapi/v3").json()["paths"][key]["serverRelativeURL"]
    out = kubectl("explain", f"gadgets.{group}.spec").stdout
    assert field_line(out, "size") == "size\t<integer> -required-"
    assert "colour" not in out

    current = http.get(f"{crds}/gadgets.{group}").json()
    current["spec"] = _crd(group, {**size, "colour": {"type": "string", "enum": ["red", "blue"]}})["spec"]
    assert http.put(f"{crds}/gadgets.{group}", json=current).status_code == 200
    after = http.get("/openapi/v3").json()["paths"][key]["serverRelativeURL"]
    assert after != before, "the hash must change with the document, or kubectl keeps its cached copy"
    # same HOME as the first explain: the old document kubectl cached must not be shown
    out = kubectl("explain", f"gadgets.{group}.spec").stdout
    assert field_line(out, "colour") == "colour\t<string>"
    assert re.search(r"^\s*enum: red, blue$", out, re.M)

    assert http.delete(f"{crds}/gadgets.{group}").status_code == 200
    assert key not in http.get("/openapi/v3").json()["paths"]
    assert http.get(f"/openapi/v3/{key}").status_code == 404
    gone = kubectl("explain", f"gadgets.{group}.spec", check=False)
    assert gone.returncode == 1
    assert f'couldn\'t find resource for "{group}/v1, Resource=gadgets"' in gone.stderr


POOL = """\
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: {name}
spec:
  selector:
    matchLabels:
      app: vllm
  targetPorts:
  - number: {port}
  endpointPickerRef:
    name: epp
    port:
      number: 9002
"""


def test_apply_and_patch_of_custom_resources_still_work(upstream_crds, kubectl, namespace) -> None:
    """With CR group-versions in the index kubectl must still send merge patches (the server
    answers 415 to strategic merge on custom resources) and validate strictly."""
    ns = ("-n", namespace)
    assert "created" in kubectl("apply", *ns, "-f", "-", input=POOL.format(name="p", port=8000)).stdout
    changed = kubectl("apply", *ns, "-v=8", "-f", "-", input=POOL.format(name="p", port=8001))
    assert "inferencepool.inference.networking.k8s.io/p configured" in changed.stdout
    assert "does not support strategic merge patch" in changed.stderr
    assert "application/strategic-merge-patch+json" not in changed.stderr
    assert "application/merge-patch+json" in changed.stderr
    get = ("get", "infpool", "p", *ns, "-o", "jsonpath={.spec.targetPorts[0].number}")
    assert kubectl(*get).stdout == "8001"
    assert "serverside-applied" in kubectl("apply", *ns, "--server-side", "-f", "-",
                                           input=POOL.format(name="p", port=8002)).stdout
    assert kubectl(*get).stdout == "8002"
    kubectl("patch", "infpool", "p", *ns, "--type", "merge", "-p", '{"spec":{"targetPorts":[{"number":8003}]}}')
    assert kubectl(*get).stdout == "8003"
    unknown = POOL.format(name="p", port=8004).replace("  selector:", "  colour: blue\n  selector:")
    strict = kubectl("apply", *ns, "-f", "-", input=unknown, check=False)
    assert strict.returncode == 1
    assert 'unknown field "spec.colour"' in strict.stderr
    assert kubectl(*get).stdout == "8003"
