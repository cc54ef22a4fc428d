"""The official Python ``kubernetes`` client (what the gateway and the EPP use): list and
watch of a custom resource, and a status patch, through the generated kubeconfig."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client, config, watch

GROUP, VERSION, PLURAL = "inference.networking.k8s.io", "v1", "inferencepools"

pytestmark = pytest.mark.xdist_group("apiserver-python-client")



def pool_body(name: str) -> dict[str, object]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferencePool", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": "vllm"}}, "targetPorts": [{"number": 8000}],
                     "endpointPickerRef": {"name": f"{name}-epp", "port": {"number": 9002}}}}


@pytest.fixture
def api_client(apiserver) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(apiserver.kubeconfig_path))


def test_list_watch_and_status_patch_of_a_custom_resource(upstream_crds, api_client, namespace) -> None:
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, pool_body("first"))
    listing = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert [i["metadata"]["name"] for i in listing["items"]] == ["first"]
    start_rv = listing["metadata"]["resourceVersion"]

    def later() -> None:
        time.sleep(0.3)
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, pool_body("second"))
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, "second",
            {"status": {"parents": [{"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                                   "name": "gw"},
                                     "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                                                     "message": "", "observedGeneration": 1,
                                                     "lastTransitionTime": "2026-01-01T00:00:00Z"}]}]}})

    writer = threading.Thread(target=later)
    writer.start()
    seen: list[tuple[str, str]] = []
    stream = watch.Watch()
    try:
        for event in stream.stream(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                                   resource_version=start_rv, timeout_seconds=5):
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if len(seen) == 2:
                stream.stop()
    finally:
        writer.join()
    assert seen == [("ADDED", "second"), ("MODIFIED", "second")]

    second = custom.get_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "second")
    assert second["status"]["parents"][0]["conditions"][0]["type"] == "Accepted"
    assert second["metadata"]["generation"] == 1

    core = client.CoreV1Api(api_client)
    names = [ns.metadata.name for ns in core.list_namespace().items]
    assert namespace in names and "default" in names
    with pytest.raises(client.ApiException) as missing:
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "nope")
    assert missing.value.status == 404
