"""The traps users hit upstream, each a test.

* kserve #5050: with both InferencePool CRDs installed, a route generated with the preview
  group (or the GA one) must resolve exactly the group it names, never the other generation's
  pool of the same name;
* an EPP whose ``--pool-group`` was not switched (its pool lives in the other group): it must
  say so, naming the flag to set, instead of silently serving nothing;
* opendatahub-io/kserve #1097: ``endpointPickerRef.port`` pointing at the model servers' port
  (their Service): the pool's status says so and the gateway sends no ext_proc (gRPC) to a
  model server.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infergate.controller.manifests import parse_manifests
from infergate.controller.resources import ObjectRef
from infergate.controller.snapshot import Snapshot
from infergate.controller.translator import TranslationResult, TranslatorOptions, translate
from infergate.controller.translator.addresses import LoopbackAllocator
from infergate.dataplane.xds_translator import translate as translate_xds
from infergate.epp.datastore import GA_GROUP, PREVIEW_GROUP, Datastore
from infergate.epp.sources.kubernetes import KubernetesSource
from infergate.util.wait import async_wait_until

from ..support.crd_apiserver import apiserver_with_crds
from .support import pods_for_deployments

GW = "gateway.networking.k8s.io"
BOTH_GROUPS = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: infergate, generation: 1}
spec: {controllerName: infergate.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default, generation: 1}
spec:
  gatewayClassName: infergate
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: vllm-ga, namespace: default}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: vllm-ga}}
    spec: {containers: [{name: vllm, ports: [{containerPort: 8000}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: vllm-preview, namespace: default}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: vllm-preview}}
    spec: {containers: [{name: vllm, ports: [{containerPort: 8000}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: epp, namespace: default}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: epp}}
    spec: {containers: [{name: epp, ports: [{containerPort: 9002}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: epp, namespace: default}
spec:
  selector: {app: epp}
  ports: [{port: 9002, targetPort: 9002}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: vllm, namespace: default, generation: 1}
spec:
  selector: {matchLabels: {app: vllm-ga}}
  targetPorts: [{number: 8000}]
  endpointPickerRef: {name: epp, port: {number: 9002}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: vllm, namespace: default, generation: 1}
spec:
  selector: {app: vllm-preview}
  targetPortNumber: 8000
  extensionRef: {name: epp}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: only-ga, namespace: default, generation: 1}
spec:
  selector: {matchLabels: {app: vllm-ga}}
  targetPorts: [{number: 8000}]
  endpointPickerRef: {name: epp, port: {number: 9002}}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: only-preview, namespace: default, generation: 1}
spec:
  selector: {app: vllm-preview}
  targetPortNumber: 8000
  extensionRef: {name: epp}
"""
ROUTES = {  # route -> (group it names, pool name)
    "names-preview": ("inference.networking.x-k8s.io", "vllm"),
    "names-ga": ("inference.networking.k8s.io", "vllm"),
    "preview-group-ga-only-pool": ("inference.networking.x-k8s.io", "only-ga"),
    "ga-group-preview-only-pool": ("inference.networking.k8s.io", "only-preview"),
}


def _route(name: str, group: str, pool: str) -> dict[str, Any]:
    return {"apiVersion": f"{GW}/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "default", "generation": 1},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": f"/{name}"}}],
                "backendRefs": [{"group": group, "kind": "InferencePool", "name": pool}]}]}}


def _translate(text: str, extra: list[dict[str, Any]] = ()) -> TranslationResult:  # type: ignore[assignment]
    objects = parse_manifests(text, "traps") + list(extra)
    return translate(Snapshot.of(objects + pods_for_deployments(objects)),
                     TranslatorOptions(addresses=LoopbackAllocator("127.0.2.0/24")))


def _conditions(entry: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in entry["conditions"]}


def test_routes_resolve_exactly_the_group_they_name_when_both_crds_exist() -> None:
    """kserve #5050: same pool name in both groups; each route gets the pool of its group."""
    result = _translate(BOTH_GROUPS, [_route(name, group, pool) for name, (group, pool) in ROUTES.items()])
    pools = {(p.group, p.name): p for p in result.ir.pools}
    routes = {r.match.path: r for lst in result.ir.listeners for vh in lst.virtual_hosts for r in vh.routes}
    for name, (group, pool) in ROUTES.items():
        (parent,) = result.statuses[ObjectRef(GW, "HTTPRoute", "default", name)]["parents"]
        (backend,) = routes[f"/{name}"].backends
        if (group, pool) in pools:
            assert _conditions(parent)["ResolvedRefs"] == ("True", "ResolvedRefs"), name
            assert backend.kind == "pool" and backend.target == pools[group, pool].key, name
        else:  # the other generation's pool of that name is never taken instead
            assert _conditions(parent)["ResolvedRefs"] == ("False", "BackendNotFound"), name
            assert backend.kind == "invalid", name
    # the two "vllm" pools are distinct: their own pods, their own statuses
    ga, preview = pools["inference.networking.k8s.io", "vllm"], pools["inference.networking.x-k8s.io", "vllm"]
    assert ga.key != preview.key and len(ga.endpoints) == 2 and len(preview.endpoints) == 1
    assert not {e.address for e in ga.endpoints} & {e.address for e in preview.endpoints}
    ga_status = result.statuses[ObjectRef("inference.networking.k8s.io", "InferencePool", "default", "vllm")]
    preview_status = result.statuses[ObjectRef("inference.networking.x-k8s.io", "InferencePool", "default", "vllm")]
    assert [p["parentRef"]["name"] for p in ga_status["parents"]] == ["gw"]
    assert [p["parentRef"]["name"] for p in preview_status["parent"]] == ["gw"]


MODEL_SERVER_PORT = BOTH_GROUPS.split("---\napiVersion: inference.networking.k8s.io/v1\nkind: InferencePool")[0] + """
---
apiVersion: v1
kind: Service
metadata: {name: vllm-ga, namespace: default}
spec:
  selector: {app: vllm-ga}
  ports: [{port: 8000, targetPort: 8000}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: vllm, namespace: default, generation: 1}
spec:
  selector: {matchLabels: {app: vllm-ga}}
  targetPorts: [{number: 8000}]
  endpointPickerRef: {name: vllm-ga, port: {number: 8000}}
"""


def test_endpoint_picker_ref_on_the_model_servers_port_is_refused() -> None:
    """opendatahub-io/kserve #1097: the EPP reference names the model servers' Service and port."""
    result = _translate(MODEL_SERVER_PORT, [_route("r", "inference.networking.k8s.io", "vllm")])
    status = result.statuses[ObjectRef("inference.networking.k8s.io", "InferencePool", "default", "vllm")]
    (parent,) = status["parents"]
    assert _conditions(parent)["ResolvedRefs"] == ("False", "InvalidExtensionRef")
    message = next(c["message"] for c in parent["conditions"] if c["type"] == "ResolvedRefs")
    assert "spec.endpointPickerRef: Service 'vllm-ga' port 8000 reaches the pool's own model servers" in message
    assert "point it at the EPP's Service and ext_proc port" in message
    (pool,) = result.ir.pools
    assert pool.picker is not None and pool.picker.endpoints == () and len(pool.endpoints) == 2
    # no ext_proc (gRPC) to a model server: the EPP cluster has no endpoints
    assignments = {a["cluster_name"]: a for a in translate_xds(result.ir).cluster_load_assignments}
    assert assignments[pool.picker.key]["endpoints"] == []
    assert assignments[pool.key]["endpoints"]  # the pool itself keeps its pods


# -- an EPP whose --pool-group was not switched ------------------------------------------------


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Iterator[Any]:
    crds = (reference_dir / "gie-v1.6.0" / "crd" / "inference.networking.k8s.io_inferencepools.yaml",
            reference_dir / "gie-v1.0.0" / "crd" / "inference.networking.x-k8s.io_inferencepools.yaml")
    with apiserver_with_crds(tmp_path_factory.mktemp("traps-apiserver"), crds) as (handle, api):
        yield handle, api


@pytest.mark.e2e
async def test_epp_with_the_wrong_pool_group_says_which_flag_to_set(
        apiserver: Any, caplog: pytest.LogCaptureFixture) -> None:
    from kubernetes import client

    handle, api = apiserver
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"traps-{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(core.create_namespace, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    await asyncio.to_thread(custom.create_namespaced_custom_object, PREVIEW_GROUP, "v1alpha2", ns, "inferencepools", {
        "apiVersion": f"{PREVIEW_GROUP}/v1alpha2", "kind": "InferencePool", "metadata": {"name": "vllm"},
        "spec": {"selector": {"app": "vllm"}, "targetPortNumber": 8000, "extensionRef": {"name": "epp"}}})
    caplog.set_level(logging.WARNING, logger="infergate.epp.sources.kubernetes")
    datastore = Datastore()
    # the default --pool-group (GA) for a pool that is still a preview one
    source = KubernetesSource("vllm", ns, GA_GROUP, kubeconfig=handle.kubeconfig_path, watch_timeout=1,
                              retry_delay=0.2, missing_pool_check=0.2)
    task = asyncio.create_task(source.run(datastore))
    expected = (f"InferencePool {ns}/vllm not found in group {GA_GROUP} (--pool-group {GA_GROUP}), but it exists "
                f"in group {PREVIEW_GROUP}: start the EPP with --pool-group {PREVIEW_GROUP}")
    try:
        await async_wait_until(lambda: any(expected in r.getMessage() for r in caplog.records), 15,
                               what="the EPP names the group its pool is in")
        assert datastore.pool is None
        # said once, not every check
        await asyncio.sleep(0.6)
        assert sum(expected in r.getMessage() for r in caplog.records) == 1
        other = KubernetesSource("absent", ns, GA_GROUP, kubeconfig=handle.kubeconfig_path)
        message = await _message(other, handle.kubeconfig_path)
        assert message == (f"InferencePool {ns}/absent not found in group {GA_GROUP} (--pool-group {GA_GROUP}): "
                           "create it, or check --pool-name / --pool-namespace / --pool-group")
        assert await _message(KubernetesSource("vllm", ns, PREVIEW_GROUP), handle.kubeconfig_path) is None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def _message(source: KubernetesSource, kubeconfig: Any) -> str | None:
    from infergate.kube.client import KubeClient
    from infergate.kube.config import load_config

    async with KubeClient(load_config(kubeconfig)) as kube:
        return await source.missing_pool_message(kube)
