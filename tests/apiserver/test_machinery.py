"""API machinery over plain HTTP: authentication, optimistic concurrency, generation and the
status subresource, selectors, patches, watch (resume, watch-list, bookmarks), finalizers,
garbage collection, discovery and OpenAPI, and persistence across a restart."""

from __future__ import annotations

import json
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from infergate.apiserver import EmbeddedAPIServer
from infergate.util.wait import wait_until

pytestmark = pytest.mark.xdist_group("apiserver-machinery")

CM = "/api/v1/namespaces/{ns}/configmaps"
MERGE = {"Content-Type": "application/merge-patch+json"}

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.machinery.infergate.io"},
    "spec": {"group": "machinery.infergate.io", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wdg"],
                       "categories": ["infergate-test"]},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {"size": {"type": "integer"},
                                                                         "color": {"type": "string",
                                                                                   "enum": ["red", "blue"]}}},
                               "status": {"type": "object", "properties": {
                                   "observedGeneration": {"type": "integer"}, "ready": {"type": "boolean"}}}}}}}]},
}
WIDGETS = "/apis/machinery.infergate.io/v1/namespaces/{ns}/widgets"

def configmap(name: str, data: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, **meta}, "data": data or {}}


@pytest.fixture(scope="module")
def widgets(http: httpx.Client) -> None:
    response = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=WIDGET_CRD)
    assert response.status_code == 201, response.text
    conditions = {c["type"]: c["status"] for c in response.json()["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}


def watch_events(http: httpx.Client, path: str, params: dict[str, str], count: int) -> list[dict[str, Any]]:
    """Up to ``count`` events of a watch that the server ends after timeoutSeconds."""
    events: list[dict[str, Any]] = []
    with http.stream("GET", path, params={"watch": "true", "timeoutSeconds": "3", **params}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.strip():
                events.append(json.loads(line))
            if len(events) >= count:
                break
    return events


def test_requests_without_the_token_get_401(apiserver) -> None:
    context = ssl.create_default_context(cafile=str(apiserver.ca_path))
    with httpx.Client(base_url=apiserver.url, verify=context) as anonymous:
        response = anonymous.get("/api/v1/namespaces")
        assert response.status_code == 401
        assert response.json()["reason"] == "Unauthorized"
        wrong = anonymous.get("/api/v1/namespaces", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert anonymous.get("/healthz").status_code == 200
    assert apiserver.url.startswith("https://127.0.0.1:")


def test_kubeconfig_has_server_token_and_ca(apiserver) -> None:
    import yaml

    config = yaml.safe_load(apiserver.kubeconfig_path.read_text())
    assert config["clusters"][0]["cluster"]["server"] == apiserver.url
    assert config["users"][0]["user"]["token"] == apiserver.token
    assert config["clusters"][0]["cluster"]["certificate-authority-data"]
    assert apiserver.kubeconfig_path.stat().st_mode & 0o077 == 0


def test_conflicting_update_gets_409_and_rv_is_global(http, namespace) -> None:
    created = http.post(CM.format(ns=namespace), json=configmap("c", {"a": "1"})).json()
    other = http.post(CM.format(ns=namespace), json=configmap("d")).json()
    assert int(other["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    first = dict(created, data={"a": "2"})
    ok = http.put(f"{CM.format(ns=namespace)}/c", json=first)
    assert ok.status_code == 200
    stale = dict(created, data={"a": "3"})
    conflict = http.put(f"{CM.format(ns=namespace)}/c", json=stale)
    assert conflict.status_code == 409
    assert conflict.json()["reason"] == "Conflict"
    assert 'Operation cannot be fulfilled on configmaps "c"' in conflict.json()["message"]
    duplicate = http.post(CM.format(ns=namespace), json=configmap("c"))
    assert duplicate.status_code == 409 and duplicate.json()["reason"] == "AlreadyExists"
    missing = http.get(f"{CM.format(ns=namespace)}/nope")
    assert missing.status_code == 404 and missing.json()["message"] == 'configmaps "nope" not found'
    # a no-op update keeps the resourceVersion
    current = http.get(f"{CM.format(ns=namespace)}/c").json()
    again = http.put(f"{CM.format(ns=namespace)}/c", json=current).json()
    assert again["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]
    no_ns = http.post(CM.format(ns="no-such-namespace"), json=configmap("x"))
    assert no_ns.status_code == 404 and no_ns.json()["message"] == 'namespaces "no-such-namespace" not found'


def test_generation_and_status_subresource(http, widgets, namespace) -> None:
    base = WIDGETS.format(ns=namespace)
    widget = {"apiVersion": "machinery.infergate.io/v1", "kind": "Widget", "metadata": {"name": "w"},
              "spec": {"size": 1}, "status": {"ready": True}}
    created = http.post(base, json=widget).json()
    assert created["metadata"]["generation"] == 1
    assert "status" not in created  # status is ignored on create with a status subresource
    status = http.patch(f"{base}/w/status", json={"status": {"observedGeneration": 1, "ready": True}}, headers=MERGE)
    assert status.status_code == 200
    assert status.json()["status"] == {"observedGeneration": 1, "ready": True}
    assert status.json()["metadata"]["generation"] == 1
    spec = http.patch(f"{base}/w", json={"spec": {"size": 2}, "status": {"ready": False}}, headers=MERGE).json()
    assert spec["metadata"]["generation"] == 2
    assert spec["status"] == {"observedGeneration": 1, "ready": True}  # the main resource cannot write status
    labels = http.patch(f"{base}/w", json={"metadata": {"labels": {"x": "y"}}}, headers=MERGE).json()
    assert labels["metadata"]["generation"] == 2
    bad = http.patch(f"{base}/w", json={"spec": {"color": "green", "size": "big"}}, headers=MERGE)
    assert bad.status_code == 422
    causes = {c["field"]: c["message"] for c in bad.json()["details"]["causes"]}
    assert causes["spec.color"].startswith('Unsupported value: "green"')
    assert "must be of type integer" in causes["spec.size"]


def test_label_and_field_selectors(http, namespace) -> None:
    for name, tier in (("a", "web"), ("b", "db"), ("c", "web")):
        http.post(CM.format(ns=namespace), json=configmap(name, labels={"tier": tier}))
    names = lambda params: [i["metadata"]["name"] for i in  # noqa: E731
                            http.get(CM.format(ns=namespace), params=params).json()["items"]]
    assert names({"labelSelector": "tier=web"}) == ["a", "c"]
    assert names({"labelSelector": "tier!=web"}) == ["b"]
    assert names({"labelSelector": "tier in (db),tier"}) == ["b"]
    assert names({"labelSelector": "!tier"}) == []
    assert names({"fieldSelector": "metadata.name=b"}) == ["b"]
    assert names({"fieldSelector": "metadata.name!=b", "labelSelector": "tier=web"}) == ["a", "c"]
    everywhere = http.get("/api/v1/configmaps", params={"labelSelector": "tier=db"}).json()["items"]
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere] == [(namespace, "b")]


def test_list_paging_with_limit_and_continue(http, namespace) -> None:
    for i in range(5):
        http.post(CM.format(ns=namespace), json=configmap(f"page-{i}"))
    seen: list[str] = []
    params = {"limit": "2"}
    for _ in range(5):
        page = http.get(CM.format(ns=namespace), params=params).json()
        seen.extend(i["metadata"]["name"] for i in page["items"])
        token = page["metadata"].get("continue")
        if not token:
            break
        assert page["metadata"]["remainingItemCount"] == 5 - len(seen)
        params = {"limit": "2", "continue": token}
    assert seen == [f"page-{i}" for i in range(5)]
    assert http.get(CM.format(ns=namespace), params={"continue": "garbage"}).status_code == 400


def test_json_patch_and_strategic_merge_patch(http, namespace) -> None:
    http.post(CM.format(ns=namespace), json=configmap("p", {"a": "1"}))
    patched = http.patch(f"{CM.format(ns=namespace)}/p", headers={"Content-Type": "application/json-patch+json"},
                         json=[{"op": "add", "path": "/data/b", "value": "2"}, {"op": "remove", "path": "/data/a"}])
    assert patched.json()["data"] == {"b": "2"}
    failed = http.patch(f"{CM.format(ns=namespace)}/p", headers={"Content-Type": "application/json-patch+json"},
                        json=[{"op": "test", "path": "/data/b", "value": "nope"}])
    assert failed.status_code == 422
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                  "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {
                      "metadata": {"labels": {"app": "d"}},
                      "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}}}
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    assert http.post(base, json=deployment).status_code == 201
    smp = {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}}}
    result = http.patch(f"{base}/d", json=smp, headers={"Content-Type": "application/strategic-merge-patch+json"})
    containers = result.json()["spec"]["template"]["spec"]["containers"]
    assert containers == [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]


def test_watch_resumes_from_a_resource_version(http, namespace) -> None:
    base = CM.format(ns=namespace)
    listing = http.get(base).json()
    start = listing["metadata"]["resourceVersion"]
    http.post(base, json=configmap("w1"))
    http.patch(f"{base}/w1", json={"data": {"k": "v"}}, headers=MERGE)
    http.delete(f"{base}/w1")
    events = watch_events(http, base, {"resourceVersion": start}, 3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]
    assert events[1]["object"]["data"] == {"k": "v"}
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(start)
    resumed = watch_events(http, base, {"resourceVersion": str(rvs[1])}, 1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in resumed] == [("DELETED", "w1")]


def test_live_watch_and_watch_list_bookmark(http, namespace) -> None:
    base = CM.format(ns=namespace)
    http.post(base, json=configmap("existing"))
    timer = threading.Timer(0.5, lambda: http.post(base, json=configmap("later")))
    timer.start()
    try:
        events = watch_events(http, base, {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
                                           "allowWatchBookmarks": "true"}, 3)
    finally:
        timer.join()
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "existing"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert events[2]["type"] == "ADDED" and events[2]["object"]["metadata"]["name"] == "later"
    single = watch_events(http, base, {"fieldSelector": "metadata.name=later", "resourceVersion": "0"}, 1)
    assert [e["object"]["metadata"]["name"] for e in single] == ["later"]


def test_watch_with_label_selector_sees_objects_enter_and_leave(http, namespace) -> None:
    base = CM.format(ns=namespace)
    start = http.get(base).json()["metadata"]["resourceVersion"]
    http.post(base, json=configmap("moving", labels={"state": "off"}))
    http.patch(f"{base}/moving", json={"metadata": {"labels": {"state": "on"}}}, headers=MERGE)
    http.patch(f"{base}/moving", json={"data": {"a": "b"}}, headers=MERGE)
    http.patch(f"{base}/moving", json={"metadata": {"labels": {"state": "off"}}}, headers=MERGE)
    timer = threading.Timer(0.3, lambda: http.patch(f"{base}/moving", json={"metadata": {"labels": {"state": "on"}}},
                                                    headers=MERGE))
    timer.start()
    try:
        live = watch_events(http, base, {"labelSelector": "state=on", "resourceVersion": "0"}, 1)
    finally:
        timer.join()
    assert [e["type"] for e in live] == ["ADDED"]
    resumed = watch_events(http, base, {"labelSelector": "state=on", "resourceVersion": start}, 4)
    assert [e["type"] for e in resumed] == ["ADDED", "MODIFIED", "DELETED", "ADDED"]
    assert resumed[1]["object"]["data"] == {"a": "b"}


def test_finalizers_delay_deletion(http, namespace) -> None:
    base = CM.format(ns=namespace)
    http.post(base, json=configmap("f", finalizers=["infergate.io/test"]))
    deleting = http.delete(f"{base}/f")
    assert deleting.status_code == 200
    obj = http.get(f"{base}/f").json()
    assert obj["metadata"]["deletionTimestamp"]
    assert obj["metadata"]["finalizers"] == ["infergate.io/test"]
    cleared = http.patch(f"{base}/f", json={"metadata": {"finalizers": None}}, headers=MERGE)
    assert cleared.status_code == 200
    assert http.get(f"{base}/f").status_code == 404


def test_terminating_namespace_waits_for_finalized_objects(http) -> None:
    assert http.post("/api/v1/namespaces", json={"metadata": {"name": "ending"}}).status_code == 201
    base = CM.format(ns="ending")
    http.post(base, json=configmap("held", finalizers=["infergate.io/test"]))
    http.post(base, json=configmap("free"))
    assert http.delete("/api/v1/namespaces/ending").status_code == 200
    ns = http.get("/api/v1/namespaces/ending").json()
    assert ns["status"]["phase"] == "Terminating" and ns["metadata"]["deletionTimestamp"]
    assert http.get(f"{base}/free").status_code == 404
    assert http.get(f"{base}/held").json()["metadata"]["deletionTimestamp"]
    refused = http.post(base, json=configmap("new"))
    assert refused.status_code == 403 and "is being terminated" in refused.json()["message"]
    http.patch(f"{base}/held", json={"metadata": {"finalizers": None}}, headers=MERGE)
    assert http.get(f"{base}/held").status_code == 404
    assert http.get("/api/v1/namespaces/ending").status_code == 404


def test_garbage_collection_by_owner_references(http, namespace) -> None:
    base = CM.format(ns=namespace)
    owner = http.post(base, json=configmap("owner")).json()
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    http.post(base, json=configmap("child", ownerReferences=[ref]))
    http.post(base, json=configmap("orphan-child", ownerReferences=[ref]))
    http.delete(f"{base}/owner")
    assert http.get(f"{base}/child").status_code == 404
    assert http.get(f"{base}/orphan-child").status_code == 404
    owner2 = http.post(base, json=configmap("owner2")).json()
    ref2 = {**ref, "name": "owner2", "uid": owner2["metadata"]["uid"]}
    http.post(base, json=configmap("kept", ownerReferences=[ref2]))
    http.request("DELETE", f"{base}/owner2", json={"propagationPolicy": "Orphan"})
    kept = http.get(f"{base}/kept").json()
    assert "ownerReferences" not in kept["metadata"]


def test_deleting_a_crd_deletes_its_objects_and_ends_their_watches(http, namespace) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD).replace("machinery.infergate.io", "doomed.infergate.io")
                     .replace('"wdg"', '"dwdg"').replace("infergate-test", "doomed-test"))
    assert http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd).status_code == 201
    base = f"/apis/doomed.infergate.io/v1/namespaces/{namespace}/widgets"
    assert http.post(base, json={"apiVersion": "doomed.infergate.io/v1", "kind": "Widget",
                                 "metadata": {"name": "w"}, "spec": {"size": 1}}).status_code == 201
    events: list[str] = []

    def watch() -> None:
        with http.stream("GET", base, params={"watch": "true", "resourceVersion": "0"}) as response:
            events.extend(json.loads(line)["type"] for line in response.iter_lines() if line.strip())

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(0.3)
    assert http.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.doomed.infergate.io"
                       ).status_code == 200
    watcher.join(timeout=5)
    assert not watcher.is_alive(), "the watch must end when its CRD is deleted"
    assert events == ["ADDED", "DELETED"]
    assert http.get(base).status_code == 404
    groups = [g["name"] for g in http.get("/apis").json()["groups"]]
    assert "doomed.infergate.io" not in groups


def test_discovery_and_openapi(http, widgets) -> None:
    aggregated = http.get("/apis", headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;"
                                                      "as=APIGroupDiscoveryList,application/json"})
    assert aggregated.headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    groups = {g["metadata"]["name"]: g for g in aggregated.json()["items"]}
    widget = groups["machinery.infergate.io"]["versions"][0]["resources"][0]
    assert widget["resource"] == "widgets" and widget["scope"] == "Namespaced"
    assert widget["shortNames"] == ["wdg"] and widget["categories"] == ["infergate-test"]
    legacy = http.get("/apis/machinery.infergate.io/v1").json()
    assert {r["name"] for r in legacy["resources"]} == {"widgets", "widgets/status"}
    assert http.get("/apis").json()["kind"] == "APIGroupList"
    index = http.get("/openapi/v3").json()["paths"]
    assert "api/v1" in index and "apis/apiextensions.k8s.io/v1" in index
    core = http.get(index["api/v1"]["serverRelativeURL"]).json()
    op = core["paths"]["/api/v1/namespaces/{name}"]["patch"]
    assert op["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "Namespace"}
    assert any(p["name"] == "fieldValidation" for p in op["parameters"])
    assert http.get("/version").json()["gitVersion"].startswith("v1.")


def test_kinds_unknown_to_infergate_api_fall_back_to_the_crd_schema(http, namespace) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "tcproutes.gateway.networking.k8s.io"},
           "spec": {"group": "gateway.networking.k8s.io", "scope": "Namespaced",
                    "names": {"plural": "tcproutes", "kind": "TCPRoute"},
                    "versions": [{"name": "v1alpha2", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {"type": "object", "properties": {
                            "mode": {"type": "string", "enum": ["fast", "slow"]}}}}}}}]}}
    assert http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd).status_code == 201
    base = f"/apis/gateway.networking.k8s.io/v1alpha2/namespaces/{namespace}/tcproutes"
    route = {"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TCPRoute", "metadata": {"name": "r"},
             "spec": {"mode": "fast"}}
    assert http.post(base, json=route).status_code == 201
    bad = http.post(base, json={**route, "metadata": {"name": "bad"}, "spec": {"mode": "warp"}})
    assert bad.status_code == 422
    assert bad.json()["details"]["causes"][0]["field"] == "spec.mode"


def test_admission_hooks_are_pluggable(tmp_path: Path) -> None:
    from infergate.apiserver.validation import Admission, FieldCause

    admission = Admission(use_api_package=False)
    admission.add_validator("", "ConfigMap", lambda obj, old, crd: [
        FieldCause("data.mode", f'Unsupported value: "{v}"', "FieldValueNotSupported")
        for v in [(obj.get("data") or {}).get("mode")] if v not in (None, "fast")])
    admission.add_defaulter("", "ConfigMap", lambda obj, crd: {**obj, "data": {"defaulted": "yes",
                                                                               **(obj.get("data") or {})}})
    handle = EmbeddedAPIServer.run_in_thread(tmp_path, admission=admission)
    try:
        context = ssl.create_default_context(cafile=str(handle.ca_path))
        with httpx.Client(base_url=handle.url, verify=context,
                          headers={"Authorization": f"Bearer {handle.token}"}) as client:
            ok = client.post(CM.format(ns="default"), json=configmap("ok", {"mode": "fast"}))
            assert ok.json()["data"] == {"defaulted": "yes", "mode": "fast"}
            bad = client.post(CM.format(ns="default"), json=configmap("bad", {"mode": "slow"}))
            assert bad.status_code == 422
            assert bad.json()["message"] == 'ConfigMap "bad" is invalid: data.mode: Unsupported value: "slow"'
            assert bad.json()["details"]["causes"] == [
                {"reason": "FieldValueNotSupported", "message": 'Unsupported value: "slow"', "field": "data.mode"}]
    finally:
        handle.stop()


def test_state_survives_restart(tmp_path: Path) -> None:
    first = EmbeddedAPIServer.run_in_thread(tmp_path)
    try:
        context = ssl.create_default_context(cafile=str(first.ca_path))
        with httpx.Client(base_url=first.url, verify=context,
                          headers={"Authorization": f"Bearer {first.token}"}) as client:
            created = client.post(CM.format(ns="default"), json=configmap("kept", {"k": "v"})).json()
            assert client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                               json=WIDGET_CRD).status_code == 201
    finally:
        first.stop()
    second = EmbeddedAPIServer.run_in_thread(tmp_path)
    try:
        assert second.token == first.token
        context = ssl.create_default_context(cafile=str(second.ca_path))
        with httpx.Client(base_url=second.url, verify=context,
                          headers={"Authorization": f"Bearer {second.token}"}) as client:
            kept = client.get(f"{CM.format(ns='default')}/kept").json()
            assert kept["data"] == {"k": "v"} and kept["metadata"]["uid"] == created["metadata"]["uid"]
            assert client.get(WIDGETS.format(ns="default")).status_code == 200
            newer = client.post(CM.format(ns="default"), json=configmap("newer")).json()
            assert int(newer["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    finally:
        second.stop()


def test_watch_of_a_disconnected_client_is_released(apiserver, http, namespace) -> None:
    hub = apiserver.server.server.hub
    before = len(hub)
    with http.stream("GET", CM.format(ns=namespace), params={"watch": "true"}) as response:
        assert response.status_code == 200
        wait_until(lambda: len(hub) > before, 5, interval=0.02, what="the watch to subscribe")
        assert len(hub) == before + 1
    wait_until(lambda: len(hub) <= before, 5, interval=0.02, what="the watch to be released")
    assert len(hub) == before


def test_in_process_apply(apiserver, http, namespace, reference_dir: Path) -> None:
    from infergate.apiserver.errors import APIError

    created = apiserver.apply_files(reference_dir / "gateway-api-v1.3.0" / "crd" / "gateway.networking.k8s.io_gatewayclasses.yaml")
    assert created[0]["status"]["conditions"][1]["type"] == "Established"
    manifest = ("apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: ours\n"
                "spec:\n  controllerName: infergate.io/gateway\n---\napiVersion: v1\nkind: ConfigMap\n"
                f"metadata:\n  name: applied\n  namespace: {namespace}\ndata:\n  a: '1'\n")
    first = apiserver.apply(manifest, field_manager="infergate-up")
    assert [o["kind"] for o in first] == ["GatewayClass", "ConfigMap"]
    again = apiserver.apply(manifest.replace("a: '1'", "b: '2'"), field_manager="infergate-up")
    assert again[1]["data"] == {"b": "2"}  # the field the manager stopped applying is gone
    stored = http.get(f"{CM.format(ns=namespace)}/applied").json()
    assert stored["data"] == {"b": "2"}
    assert [m["manager"] for m in stored["metadata"]["managedFields"]] == ["infergate-up"]
    assert http.get("/apis/gateway.networking.k8s.io/v1/gatewayclasses/ours").status_code == 200
    with pytest.raises(APIError) as missing:
        apiserver.apply([{"apiVersion": "example.com/v1", "kind": "Nope", "metadata": {"name": "x"}}])
    assert missing.value.code == 404


def test_in_process_apply_keeps_unquoted_timestamps_as_the_strings_written(apiserver, http, namespace) -> None:
    manifest = (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: seeded-at\n  namespace: {namespace}\n"
                "  annotations:\n    seeded-at: 2026-01-01T00:00:00Z\ndata:\n  day: 2026-01-02\n")
    applied = apiserver.apply(manifest)
    assert applied[0]["data"] == {"day": "2026-01-02"}  # as kubectl would send them: strings
    stored = http.get(f"{CM.format(ns=namespace)}/seeded-at").json()
    assert stored["metadata"]["annotations"] == {"seeded-at": "2026-01-01T00:00:00Z"}
    assert stored["data"] == {"day": "2026-01-02"}


def test_pluggable_subresource_serves_kubectl_logs(tmp_path: Path, kubectl_bin: str) -> None:
    import subprocess

    from aiohttp import web

    async def logs(request: web.Request, namespace: str | None, name: str) -> web.StreamResponse:
        container = request.query.get("container", "")
        return web.Response(text=f"log of {namespace}/{name} container {container}\n")

    handle = EmbeddedAPIServer.run_in_thread(tmp_path / "state")
    try:
        handle.add_subresource_handler("", "pods", "log", logs)
        handle.apply([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                       "spec": {"containers": [{"name": "main", "image": "sim"}]}}])
        env = {"KUBECONFIG": str(handle.kubeconfig_path), "HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
        out = subprocess.run([kubectl_bin, "logs", "p"], env=env, capture_output=True, text=True, timeout=30)
        assert out.stdout == "log of default/p container main\n", out.stderr
        missing = subprocess.run([kubectl_bin, "logs", "nope"], env=env, capture_output=True, text=True, timeout=30)
        assert 'pods "nope" not found' in missing.stderr
    finally:
        handle.stop()


def test_scale_subresource_patches_and_rejects_a_failed_json_patch_test(http, namespace) -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "scaled"},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "s"}}, "template": {
                      "metadata": {"labels": {"app": "s"}}, "spec": {"containers": [{"name": "a", "image": "a:1"}]}}}}
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    assert http.post(base, json=deployment).status_code == 201
    scale = http.get(f"{base}/scaled/scale").json()
    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 1)
    merged = http.patch(f"{base}/scaled/scale", json={"spec": {"replicas": 3}}, headers=MERGE)
    assert merged.status_code == 200 and merged.json()["spec"]["replicas"] == 3
    json_patch = {"Content-Type": "application/json-patch+json"}
    patched = http.patch(f"{base}/scaled/scale", headers=json_patch,
                         json=[{"op": "test", "path": "/spec/replicas", "value": 3},
                               {"op": "replace", "path": "/spec/replicas", "value": 2}])
    assert patched.status_code == 200 and patched.json()["spec"]["replicas"] == 2
    failed = http.patch(f"{base}/scaled/scale", headers=json_patch,
                        json=[{"op": "test", "path": "/spec/replicas", "value": 5}])
    assert failed.status_code == 422, failed.text  # as kube-apiserver; it was a 500 InternalError
    assert failed.json()["reason"] == "Invalid"
    assert http.get(f"{base}/scaled").json()["spec"]["replicas"] == 2
