"""Kubernetes pool source: event handling (with the official client's objects) and list+watch
against a real API server (infergate's embedded one), through the official client."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from infergate.epp.datastore import GA_GROUP, PREVIEW_GROUP, Datastore
from infergate.epp.sources.base import SourceError
from infergate.epp.sources.kubernetes import KubernetesEventHandler, KubernetesSource
from infergate.util.wait import WaitTimeout, async_wait_until

from ..support.crd_apiserver import apiserver_with_crds

SERIALIZER: Any = ApiClient()


def pod_dict(name: str, ip: str, labels: dict[str, str], ready: bool = True, deleting: bool = False) -> dict[str, Any]:
    pod = client.V1Pod(
        api_version="v1", kind="Pod",
        metadata=client.V1ObjectMeta(name=name, namespace="default", labels=labels,
                                     deletion_timestamp="2025-01-01T00:00:00Z" if deleting else None),
        status=client.V1PodStatus(pod_ip=ip, conditions=[
            client.V1PodCondition(type="Ready", status="True" if ready else "False")]),
    )
    data: dict[str, Any] = SERIALIZER.sanitize_for_serialization(pod)
    return data


def ga_pool(name: str = "pool", selector: dict[str, str] | None = None, port: int = 8000) -> dict[str, Any]:
    return {"apiVersion": f"{GA_GROUP}/v1", "kind": "InferencePool",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": selector or {"app": "vllm"}}, "targetPorts": [{"number": port}],
                     "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}}


def objective(name: str, priority: int | None, pool: str = "pool", group: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": pool}
    if group:
        ref["group"] = group
    spec: dict[str, Any] = {"poolRef": ref}
    if priority is not None:
        spec["priority"] = priority
    return {"apiVersion": f"{PREVIEW_GROUP}/v1alpha2", "kind": "InferenceObjective",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_pod_events_follow_readiness_and_deletion() -> None:
    ds = Datastore()
    h = KubernetesEventHandler(ds, "pool")
    h.pod_list([pod_dict("a", "10.0.0.1", {"app": "vllm"}), pod_dict("b", "10.0.0.2", {"app": "vllm"}, ready=False)])
    h.pool_list([ga_pool()])
    assert [e.hostport for e in ds.endpoints()] == ["10.0.0.1:8000"]
    h.pod_event("MODIFIED", pod_dict("b", "10.0.0.2", {"app": "vllm"}))
    assert len(ds.endpoints()) == 2
    h.pod_event("MODIFIED", pod_dict("a", "10.0.0.1", {"app": "vllm"}, deleting=True))
    assert [e.pod_name for e in ds.endpoints()] == ["b"]
    h.pod_event("DELETED", pod_dict("b", "10.0.0.2", {"app": "vllm"}))
    assert ds.endpoints() == ()


def test_pool_events_both_generations() -> None:
    ds = Datastore()
    h = KubernetesEventHandler(ds, "pool", PREVIEW_GROUP)
    h.pod_list([pod_dict("a", "10.0.0.1", {"app": "vllm"})])
    h.pool_event("ADDED", {"apiVersion": f"{PREVIEW_GROUP}/v1alpha2", "kind": "InferencePool",
                           "metadata": {"name": "pool"},
                           "spec": {"selector": {"app": "vllm"}, "targetPortNumber": 8001,
                                    "extensionRef": {"name": "epp"}}})
    assert ds.pool is not None and ds.pool.generation == "preview"
    assert [e.hostport for e in ds.endpoints()] == ["10.0.0.1:8001"]
    h.pool_event("ADDED", ga_pool("someone-else"))  # other pools are ignored
    assert ds.pool.name == "pool"
    h.pool_event("DELETED", ga_pool())
    assert not ds.synced and ds.endpoints() == ()
    h.pool_list([])
    assert not ds.synced


def test_objectives_match_pool_name_and_group() -> None:
    ds = Datastore()
    h = KubernetesEventHandler(ds, "pool", GA_GROUP)
    h.objective_list([objective("a", 2), objective("b", 1, pool="other"), objective("c", 1, group=PREVIEW_GROUP),
                      objective("d", None)])
    assert {o.name: o.priority for o in ds.objectives()} == {"a": 2, "d": None}
    h.objective_event("MODIFIED", objective("a", 1, pool="other"))  # moved to another pool -> gone
    assert ds.objective("a") is None
    h.objective_event("ADDED", objective("e", -1))
    assert ds.objective("e") is not None
    h.objective_event("DELETED", objective("e", -1))
    assert ds.objective("e") is None


def test_model_events_preview() -> None:
    ds = Datastore()
    h = KubernetesEventHandler(ds, "pool", PREVIEW_GROUP)
    model = {"metadata": {"name": "m", "creationTimestamp": "2025-01-01T00:00:00Z"},
             "spec": {"modelName": "food", "criticality": "Critical", "poolRef": {"name": "pool"},
                      "targetModels": [{"name": "food-1", "weight": 1}]}}
    h.model_list([model, {"metadata": {"name": "bad"}, "spec": {"poolRef": {"name": "pool"}}}])
    found = ds.model("food")
    assert found is not None and found.criticality == "Critical"
    h.model_event("DELETED", model)
    assert ds.model("food") is None


def test_bad_pool_group_is_rejected() -> None:
    with pytest.raises(SourceError, match="--pool-group"):
        KubernetesSource("pool", pool_group="example.com")


# ---- against a real API server ------------------------------------------------------------

@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Iterator[Any]:
    crds = [*sorted((reference_dir / "gie-v1.0.0" / "crd").glob("*.yaml")),
            reference_dir / "gie-v0.3.0" / "crd" / "inference.networking.x-k8s.io_inferencemodels.yaml"]
    with apiserver_with_crds(tmp_path_factory.mktemp("epp-apiserver"), crds) as (handle, api):
        yield handle, api


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    try:
        await async_wait_until(predicate, timeout, what=what)
    except WaitTimeout as exc:
        raise AssertionError(str(exc)) from None


@pytest.mark.e2e
async def test_list_watch_against_embedded_apiserver(apiserver: Any) -> None:
    handle, api = apiserver
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    ns = f"epp-{uuid.uuid4().hex[:6]}"

    def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return asyncio.to_thread(fn, *args, **kwargs)

    await call(core.create_namespace, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    async def create_pod(name: str, ip: str, ready: bool = True) -> None:
        body = pod_dict(name, ip, {"app": "vllm"}, ready=ready)
        body["metadata"]["namespace"] = ns
        body["spec"] = {"containers": [{"name": "c", "image": "sim"}]}
        created = await call(core.create_namespaced_pod, ns, body)
        if created.status is None or created.status.pod_ip != ip:  # status set through the subresource
            await call(core.patch_namespaced_pod_status, name, ns, {"status": body["status"]})

    await create_pod("a", "10.1.0.1")
    pool = ga_pool()
    pool["metadata"]["namespace"] = ns
    await call(custom.create_namespaced_custom_object, GA_GROUP, "v1", ns, "inferencepools", pool)
    obj = objective("crit", 5)
    obj["metadata"]["namespace"] = ns
    await call(custom.create_namespaced_custom_object, PREVIEW_GROUP, "v1alpha2", ns, "inferenceobjectives", obj)

    ds = Datastore()
    source = KubernetesSource("pool", ns, GA_GROUP, kubeconfig=handle.kubeconfig_path, watch_timeout=1,
                              retry_delay=0.2)
    task = asyncio.create_task(source.run(ds))
    try:
        await wait_until(lambda: [e.hostport for e in ds.endpoints()] == ["10.1.0.1:8000"], "initial list")
        await wait_until(lambda: ds.objective("crit") is not None, "objective listed")
        await wait_until(lambda: source.synced, "all watches synced")

        await create_pod("b", "10.1.0.2")  # watch: ADDED
        await wait_until(lambda: len(ds.endpoints()) == 2, "pod b added")
        await call(core.patch_namespaced_pod_status, "b", ns,
                   {"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
        await wait_until(lambda: [e.pod_name for e in ds.endpoints()] == ["a"], "pod b not ready")
        await call(custom.patch_namespaced_custom_object, GA_GROUP, "v1", ns, "inferencepools", "pool",
                   {"spec": {"targetPorts": [{"number": 9000}]}})
        await wait_until(lambda: [e.hostport for e in ds.endpoints()] == ["10.1.0.1:9000"], "pool port changed")
        await call(custom.delete_namespaced_custom_object, PREVIEW_GROUP, "v1alpha2", ns, "inferenceobjectives", "crit")
        await wait_until(lambda: ds.objective("crit") is None, "objective deleted")
        await call(custom.delete_namespaced_custom_object, GA_GROUP, "v1", ns, "inferencepools", "pool")
        await wait_until(lambda: not ds.synced, "pool deleted")
        # watches end after their timeout (1 s here) and resume from the last resourceVersion:
        # no relist, and changes made after the resume still arrive
        pods = next(w for w in source._watchers if w.name == "pods")
        await wait_until(lambda: pods.resumes >= 1, "pod watch resumed", timeout=10)
        await create_pod("c", "10.1.0.3")
        await wait_until(lambda: any(p.name == "c" for p in ds.pods()), "pod c after resume")
        assert pods.lists == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.e2e
async def test_preview_pool_and_inference_models_against_embedded_apiserver(apiserver: Any) -> None:
    handle, api = apiserver
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    ns = f"epp-{uuid.uuid4().hex[:6]}"
    namespace: Any = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
    await asyncio.to_thread(core.create_namespace, namespace)
    pool = {"apiVersion": f"{PREVIEW_GROUP}/v1alpha2", "kind": "InferencePool",
            "metadata": {"name": "old-pool", "namespace": ns},
            "spec": {"selector": {"app": "vllm"}, "targetPortNumber": 8000, "extensionRef": {"name": "epp"}}}
    await asyncio.to_thread(custom.create_namespaced_custom_object, PREVIEW_GROUP, "v1alpha2", ns, "inferencepools", pool)
    model = {"apiVersion": f"{PREVIEW_GROUP}/v1alpha2", "kind": "InferenceModel",
             "metadata": {"name": "food", "namespace": ns},
             "spec": {"modelName": "food-review", "criticality": "Standard", "poolRef": {"name": "old-pool"},
                      "targetModels": [{"name": "food-review-1", "weight": 100}]}}
    await asyncio.to_thread(custom.create_namespaced_custom_object, PREVIEW_GROUP, "v1alpha2", ns, "inferencemodels",
                            model)
    ds = Datastore()
    source = KubernetesSource("old-pool", ns, PREVIEW_GROUP, kubeconfig=handle.kubeconfig_path, watch_timeout=5,
                              retry_delay=0.2)
    task = asyncio.create_task(source.run(ds))
    try:
        await wait_until(lambda: ds.pool is not None and ds.model("food-review") is not None, "preview pool and model")
        assert ds.pool is not None and ds.pool.generation == "preview" and ds.pool.target_ports == (8000,)
        found = ds.model("food-review")
        assert found is not None and [t.name for t in found.target_models] == ["food-review-1"]
        await asyncio.to_thread(custom.delete_namespaced_custom_object, PREVIEW_GROUP, "v1alpha2", ns,
                                "inferencemodels", "food")
        await wait_until(lambda: ds.model("food-review") is None, "model deleted")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
