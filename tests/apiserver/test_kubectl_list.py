"""``kubectl apply -f`` of a ``kind: List`` with client-side validation on (the default).

kubectl validates a List against ``/openapi/v2`` (protobuf), never the v3 documents; a 404
there used to fail every List. The items are still validated, by the server.
"""

from __future__ import annotations

import httpx
import yaml

from infergate.apiserver import openapi_v2


def config_map(name: str, value: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"key": value}}


def inference_pool(name: str, port: object = 8000, **extra: object) -> dict[str, object]:
    spec: dict[str, object] = {"selector": {"matchLabels": {"app": "vllm"}}, "targetPorts": [{"number": port}],
                               "endpointPickerRef": {"name": f"{name}-epp", "port": {"number": 9002}}}
    spec.update(extra)
    return {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
            "metadata": {"name": name}, "spec": spec}


def as_list(*items: dict[str, object]) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": list(items)})


def test_openapi_v2_is_a_protobuf_document(http: httpx.Client) -> None:
    response = http.get("/openapi/v2", headers={"Accept": openapi_v2.PROTOBUF_CONTENT_TYPE.replace(".v1.0", "@v1.0")})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == openapi_v2.PROTOBUF_CONTENT_TYPE
    # Document{swagger: "2.0", info: {title, version}, paths: {}, definitions: {}}
    assert response.content.startswith(b"\x0a\x032.0\x12")
    assert response.content.endswith(b"\x42\x00\x4a\x00")
    assert http.get("/openapi/v2").json()["swagger"] == "2.0"


def test_apply_list_of_config_map_and_inference_pool(upstream_crds, kubectl, namespace) -> None:
    listing = as_list(config_map("settings", "one"), inference_pool("pool-a"))
    result = kubectl("apply", "-n", namespace, "-f", "-", input=listing)
    assert result.stdout.split("\n")[:2] == ["configmap/settings created",
                                             "inferencepool.inference.networking.k8s.io/pool-a created"]
    assert kubectl("get", "configmap", "settings", "-n", namespace, "-o", "jsonpath={.data.key}").stdout == "one"
    port = kubectl("get", "inferencepool.inference.networking.k8s.io", "pool-a", "-n", namespace,
                   "-o", "jsonpath={.spec.targetPorts[0].number}").stdout
    assert port == "8000"


def test_reapply_list_from_get_output(upstream_crds, kubectl, namespace) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=as_list(config_map("c1", "v1"), config_map("c2", "v1")))
    dumped = kubectl("get", "configmaps", "c1", "c2", "-n", namespace, "-o", "yaml").stdout
    document = yaml.safe_load(dumped)
    assert document["kind"] == "List" and len(document["items"]) == 2
    changed = dumped.replace("key: v1", "key: v2")
    result = kubectl("apply", "-n", namespace, "-f", "-", input=changed)
    assert "configmap/c1 configured" in result.stdout and "configmap/c2 configured" in result.stdout
    values = kubectl("get", "configmaps", "c1", "c2", "-n", namespace, "-o", "jsonpath={.items[*].data.key}").stdout
    assert values == "v2 v2"


def test_invalid_item_in_list_is_rejected_with_its_field_path(upstream_crds, kubectl, namespace) -> None:
    listing = as_list(config_map("fine", "x"), inference_pool("bad-port", port=0))
    result = kubectl("apply", "-n", namespace, "-f", "-", input=listing, check=False)
    assert result.returncode == 1
    assert "configmap/fine created" in result.stdout
    assert ('The InferencePool "bad-port" is invalid: '
            "spec.targetPorts[0].number: Invalid value: 0: must be greater than or equal to 1") in result.stderr
    assert kubectl("get", "inferencepool.inference.networking.k8s.io", "bad-port", "-n", namespace,
                   check=False).returncode == 1

    unknown = as_list(inference_pool("colourful", colour="blue"))
    strict = kubectl("apply", "-n", namespace, "-f", "-", input=unknown, check=False)
    assert strict.returncode == 1
    assert 'unknown field "spec.colour"' in strict.stderr
