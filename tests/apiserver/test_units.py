"""Pure parts of the API server: protobuf decoding, JSONPath, durations, patches, selectors,
version priority and structural schema checks."""

from __future__ import annotations

import base64

import pytest

from infergate.apiserver import protobuf
from infergate.apiserver.jsonpath import evaluate
from infergate.apiserver.patch import (
    PatchError,
    json_patch,
    merge_patch,
    server_side_apply,
    strategic_merge_patch,
)
from infergate.apiserver.resources import sort_versions
from infergate.apiserver.selectors import SelectorError, field_selector, label_selector
from infergate.apiserver.table import human_duration
from infergate.apiserver.validation import check_schema, prune


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | str | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _entry(number: int, key: str, value: bytes | str) -> bytes:
    return _field(number, _field(1, key) + _field(2, value))


def test_protobuf_secret_like_helm_sends_it() -> None:
    release = base64.b64encode(b"\x1f\x8b gzip bytes")
    meta = (_field(1, "sh.helm.release.v1.demo.v1") + _field(3, "") + _field(8, _field(1, 0))
            + _entry(11, "owner", "helm") + _entry(11, "version", "1") + _field(14, "keep"))
    secret = _field(1, meta) + _entry(2, "release", release) + _field(3, "helm.sh/release.v1")
    body = protobuf.MAGIC + _field(1, _field(1, "v1") + _field(2, "Secret")) + _field(2, secret)
    decoded = protobuf.decode(body)
    assert decoded == {
        "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
        "metadata": {"name": "sh.helm.release.v1.demo.v1", "labels": {"owner": "helm", "version": "1"},
                     "finalizers": ["keep"]},
        "data": {"release": base64.b64encode(release).decode()},
    }


def test_protobuf_namespace_configmap_and_delete_options() -> None:
    ns = protobuf.decode(protobuf.MAGIC + _field(1, _field(1, "v1") + _field(2, "Namespace"))
                         + _field(2, _field(1, _field(1, "team-a"))))
    assert ns == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
    cm = protobuf.decode(protobuf.MAGIC + _field(1, _field(1, "v1") + _field(2, "ConfigMap"))
                         + _field(2, _field(1, _field(1, "c")) + _entry(2, "k", "v") + _entry(3, "b", b"\x00\x01")))
    assert cm["data"] == {"k": "v"} and cm["binaryData"] == {"b": "AAE="}
    options = protobuf.decode(protobuf.MAGIC + _field(1, _field(1, "v1") + _field(2, "DeleteOptions"))
                              + _field(2, _field(1, 0) + _field(4, "Background")))
    assert options["propagationPolicy"] == "Background" and options["gracePeriodSeconds"] == 0
    with pytest.raises(protobuf.ProtobufError, match="Ingress are not supported"):
        protobuf.decode(protobuf.MAGIC + _field(1, _field(1, "networking.k8s.io/v1") + _field(2, "Ingress")) + _field(2, b""))
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(b"{}")


def test_jsonpath_subset_of_printer_columns() -> None:
    gateway = {"status": {"addresses": [{"value": "10.0.0.1"}, {"value": "10.0.0.2"}],
                          "conditions": [{"type": "Accepted", "status": "True"},
                                         {"type": "Programmed", "status": "False"}]}}
    assert evaluate(gateway, ".status.addresses[0].value") == ["10.0.0.1"]
    assert evaluate(gateway, "{.status.addresses[*].value}") == ["10.0.0.1", "10.0.0.2"]
    assert evaluate(gateway, '.status.conditions[?(@.type=="Programmed")].status') == ["False"]
    assert evaluate(gateway, ".status.conditions[?(@.type!='Programmed')].type") == ["Accepted"]
    assert evaluate(gateway, ".status.addresses[-1].value") == ["10.0.0.2"]
    assert evaluate(gateway, ".spec.missing") == []
    assert evaluate({"metadata": {"labels": {"a.b/c": "x"}}}, ".metadata.labels['a.b/c']") == ["x"]


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (119, "119s"), (120, "2m"), (125, "2m5s"), (600, "10m"), (3 * 3600, "3h"),
    (3 * 3600 + 60, "3h1m"), (30 * 3600, "30h"), (50 * 3600, "2d2h"), (10 * 86400, "10d"),
    (800 * 86400, "2y70d"), (-5, "<invalid>"),
])
def test_human_duration_matches_kubernetes(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_merge_and_json_patch() -> None:
    doc = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch(doc, {"a": {"b": None, "c": [3]}, "e": 2}) == {"a": {"c": [3]}, "d": 1, "e": 2}
    assert doc == {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    patched = json_patch(doc, [{"op": "add", "path": "/a/c/-", "value": 3}, {"op": "move", "from": "/d", "path": "/f"},
                               {"op": "copy", "from": "/f", "path": "/g"}, {"op": "replace", "path": "/a/b", "value": 5}])
    assert patched == {"a": {"b": 5, "c": [1, 2, 3]}, "f": 1, "g": 1}
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "test", "path": "/d", "value": 2}])
    with pytest.raises(PatchError):
        json_patch(doc, [{"op": "replace", "path": "/nope", "value": 2}])
    for bad in ([{"op": "remove", "path": "/a/x"}], [{"op": "add", "path": "/a/c/9", "value": 1}],
                [{"op": "frobnicate", "path": "/a"}], [{"op": "move", "path": "/x"}], [{"path": "/a"}], [1], {}):
        with pytest.raises(PatchError):
            json_patch(doc, bad)
    assert json_patch(doc, [{"op": "test", "path": "/a/c/0", "value": 1}, {"op": "remove", "path": "/a/c/0"}]) == \
        {"a": {"b": 1, "c": [2]}, "d": 1}
    assert doc == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


def test_strategic_merge_patch_merges_lists_by_key() -> None:
    pod = {"spec": {"containers": [{"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
                                   {"name": "b", "image": "b:1"}], "finalizers": ["f1"]}}
    patch = {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                      "containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]},
                                     {"name": "b", "$patch": "delete"}],
                      "finalizers": ["f2"]}}
    result = strategic_merge_patch(pod, patch)
    assert result["spec"]["containers"] == [
        {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]
    assert result["spec"]["finalizers"] == ["f1", "f2"]
    replaced = strategic_merge_patch({"data": {"a": "1", "b": "2"}}, {"data": {"$patch": "replace", "c": "3"}})
    assert replaced == {"data": {"c": "3"}}


def test_server_side_apply_drops_fields_the_manager_stopped_setting() -> None:
    first = server_side_apply(None, {"metadata": {"name": "x", "labels": {"a": "1"}},
                                     "spec": {"keep": 1, "drop": 2}}, "helm", "v1")
    first["spec"]["other"] = "set by someone else"
    second = server_side_apply(first, {"metadata": {"name": "x"}, "spec": {"keep": 3}}, "helm", "v1")
    assert second["spec"] == {"keep": 3, "other": "set by someone else"}
    assert "labels" not in second["metadata"] or "a" not in second["metadata"]["labels"]
    managers = second["metadata"]["managedFields"]
    assert [(m["manager"], m["operation"]) for m in managers] == [("helm", "Apply")]
    assert managers[0]["fieldsV1"] == {"f:spec": {"f:keep": {}}}


def test_selectors() -> None:
    obj = {"metadata": {"name": "n", "labels": {"app": "web", "tier": "1"}}, "spec": {"nodeName": "x"}}
    assert label_selector("app=web,tier in (1,2)")(obj)
    assert not label_selector("app=web,tier notin (1)")(obj)
    assert label_selector("app,!missing")(obj)
    assert not label_selector("app==db")(obj)
    assert field_selector("metadata.name=n,spec.nodeName!=y")(obj)
    assert not field_selector("spec.nodeName=y")(obj)
    with pytest.raises(SelectorError):
        label_selector("app=(")(obj)


def test_version_priority() -> None:
    assert sort_versions(["v1alpha2", "v1beta1", "v1", "v2", "v2beta1", "v1alpha1", "foo"]) == (
        "v2", "v1", "v2beta1", "v1beta1", "v1alpha2", "v1alpha1", "foo")


def test_structural_schema_check_and_prune() -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "required": ["port"], "properties": {
        "port": {"type": "integer"}, "mode": {"type": "string", "enum": ["a", "b"]},
        "ref": {"x-kubernetes-int-or-string": True}, "free": {"type": "object",
                                                             "x-kubernetes-preserve-unknown-fields": True},
        "items": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}}}}}}
    obj = {"metadata": {"name": "x"}, "spec": {"port": "80", "mode": "c", "ref": 3, "free": {"any": 1},
                                               "items": [{"n": 1, "extra": True}], "colour": "red"}}
    errors, unknown = check_schema(obj, schema)
    assert {e.field for e in errors} == {"spec.port", "spec.mode"}
    assert sorted(unknown) == ["spec.colour", "spec.items[0].extra"]
    prune(obj, unknown)
    assert obj["spec"]["items"] == [{"n": 1}] and "colour" not in obj["spec"]
    missing, _ = check_schema({"spec": {}}, schema)
    assert [(e.field, e.reason) for e in missing] == [("spec.port", "FieldValueRequired")]


def test_protobuf_unknown_fields_are_refused_not_dropped() -> None:
    container = _field(1, "c") + _field(2, "img") + _field(99, "surprise")
    pod = _field(1, _field(1, "p")) + _field(2, _field(2, container))
    with pytest.raises(protobuf.ProtobufError, match="field 99 of Container is not supported"):
        protobuf.decode(protobuf.MAGIC + _field(1, _field(1, "v1") + _field(2, "Pod")) + _field(2, pod))
    # zero scalars that Go always encodes are dropped; pointer fields keep an explicit zero
    spec = _field(1, 0) + _field(3, _field(1, _field(1, "app"))) + _field(7, 0)
    deployment = protobuf.decode(protobuf.MAGIC + _field(1, _field(1, "apps/v1") + _field(2, "Deployment"))
                                 + _field(2, _field(1, _field(1, "d")) + _field(2, spec)))
    assert deployment["spec"] == {"replicas": 0, "template": {"metadata": {"name": "app"}}}


def test_strategic_merge_patch_deletes_list_elements_by_key() -> None:
    service = {"spec": {"ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}}
    patch = {"spec": {"$setElementOrder/ports": [{"port": 80}], "ports": [{"$patch": "delete", "port": 443}]}}
    assert strategic_merge_patch(service, patch) == {"spec": {"ports": [{"name": "http", "port": 80}]}}


def test_service_cluster_ips_are_loopback_addresses() -> None:
    # No kube-proxy here: a client falling back to a cluster IP must never leave the machine.
    import ipaddress

    from infergate.apiserver.defaults import allocate_cluster_ip, default_service

    first = allocate_cluster_ip([])
    second = allocate_cluster_ip([first])
    assert first != second
    assert all(ipaddress.ip_address(ip).is_loopback for ip in (first, second))
    svc: dict[str, object] = {"spec": {"ports": [{"port": 9002}]}}
    default_service(svc, [first, second])
    spec = svc["spec"]
    assert isinstance(spec, dict) and ipaddress.ip_address(spec["clusterIP"]).is_loopback
