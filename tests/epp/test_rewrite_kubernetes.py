"""The EPP's Kubernetes source against infergate's embedded API server with upstream's CRDs of
today (GIE v1.6.0 InferencePool, GIE v1.5.0 x-k8s.io InferenceObjective/InferenceModelRewrite,
then the llm-d router's llm-d.ai ones): rewrites and objectives reach the datastore, and the
llm-d.ai group takes over once its CRDs are installed and its first objects arrive."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from infergate.epp.datastore import GA_GROUP, Datastore
from infergate.epp.rewrite import LLMD_GROUP, XK8S_GROUP
from infergate.epp.sources.kubernetes import KubernetesSource
from infergate.util.wait import WaitTimeout, async_wait_until

from ..support.crd_apiserver import apiserver_with_crds

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Iterator[Any]:
    crds = [reference_dir / "gie-v1.6.0" / "crd" / "inference.networking.k8s.io_inferencepools.yaml",
            *sorted((reference_dir / "gie-v1.5.0" / "crd").glob("*.yaml"))]
    with apiserver_with_crds(tmp_path_factory.mktemp("epp-rewrite-apiserver"), crds) as (handle, api):
        yield handle, api, client.ApiextensionsV1Api(api), reference_dir


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    try:
        await async_wait_until(predicate, timeout, what=what)
    except WaitTimeout as exc:
        raise AssertionError(str(exc)) from None


def rewrite(name: str, model: str, target: str) -> dict[str, Any]:
    return {"kind": "InferenceModelRewrite", "metadata": {"name": name},
            "spec": {"poolRef": {"name": "pool"},
                     "rules": [{"matches": [{"model": {"value": model}}], "targets": [{"modelRewrite": target}]}]}}


def objective(name: str, priority: int) -> dict[str, Any]:
    return {"kind": "InferenceObjective", "metadata": {"name": name},
            "spec": {"priority": priority, "poolRef": {"name": "pool"}}}


async def test_rewrites_and_objectives_of_both_groups(apiserver: Any) -> None:
    handle, api, ext, reference_dir = apiserver
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    ns = f"rw-{uuid.uuid4().hex[:6]}"

    def call(fn: Callable[..., Any], *args: Any) -> Any:
        return asyncio.to_thread(fn, *args)

    async def create(group: str, plural: str, body: dict[str, Any], version: str = "v1alpha2") -> None:
        body = {**body, "apiVersion": f"{group}/{version}"}
        await call(custom.create_namespaced_custom_object, group, version, ns, plural, body)

    await call(core.create_namespace, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": {"app": "vllm"}},
           "spec": {"containers": [{"name": "c", "image": "sim"}]}}
    await call(core.create_namespaced_pod, ns, pod)
    await call(core.patch_namespaced_pod_status, "a", ns,
               {"status": {"podIP": "10.2.0.1", "conditions": [{"type": "Ready", "status": "True"}]}})
    await create(GA_GROUP, "inferencepools", {
        "kind": "InferencePool", "metadata": {"name": "pool"},
        "spec": {"selector": {"matchLabels": {"app": "vllm"}}, "targetPorts": [{"number": 8000}, {"number": 8001}],
                 "appProtocol": "kubernetes.io/h2c"}}, version="v1")
    await create(XK8S_GROUP, "inferencemodelrewrites", rewrite("rw", "m", "from-x"))
    await create(XK8S_GROUP, "inferenceobjectives", objective("crit", 5))

    ds = Datastore()
    rng = random.Random(0)
    # a long grace: the copies below land however loaded the machine (the grace's end: test_llmd_late_install)
    source = KubernetesSource("pool", ns, GA_GROUP, kubeconfig=handle.kubeconfig_path, watch_timeout=1,
                              retry_delay=0.2, late_crd_grace_s=10.0)
    task = asyncio.create_task(source.run(ds))
    try:
        await wait_until(lambda: sorted(e.hostport for e in ds.endpoints()) == ["10.2.0.1:8000", "10.2.0.1:8001"],
                         "one endpoint per target port (v1.6.0 pool without endpointPickerRef)")
        await wait_until(lambda: ds.rewrites.pick("m", rng) == "from-x", "x-k8s.io rewrite listed")
        await wait_until(lambda: ds.objective("crit") is not None, "x-k8s.io objective listed")
        await wait_until(lambda: source.synced, "all watches synced (llm-d.ai not installed counts as empty)")
        assert ds.rewrites.active_group == XK8S_GROUP

        for path in sorted((reference_dir / "llm-d-router-v0.10.0" / "crd").glob("*.yaml")):
            await call(ext.create_custom_resource_definition, yaml.safe_load(path.read_text()))
        llmd_watches = [w for w in source._watchers if w.name.endswith(f".{LLMD_GROUP}")]
        await wait_until(lambda: len(llmd_watches) == 2 and all(w.served and w.lists for w in llmd_watches),
                         "the EPP lists the new llm-d.ai CRDs")
        # the copies land late, as under load (`migrate llm-d --install-crds` copies right after the
        # CRDs): until they do, the x-k8s.io objects still apply (defect: none applied, a 404 for "m")
        seen = {(ds.rewrites.pick("m", rng), getattr(ds.objective("crit"), "priority", None))}
        await create(LLMD_GROUP, "inferencemodelrewrites", rewrite("rw", "m", "from-llmd"))
        for _ in range(500):  # bounded: 5 s
            seen.add((ds.rewrites.pick("m", rng), getattr(ds.objective("crit"), "priority", None)))
            if ds.rewrites.pick("m", rng) == "from-llmd":
                break
            await asyncio.sleep(0.01)
        assert ds.rewrites.active_group == LLMD_GROUP
        await create(LLMD_GROUP, "inferenceobjectives", objective("crit", 9))
        await wait_until(lambda: getattr(ds.objective("crit"), "priority", None) == 9, "llm-d.ai objective watched")
        assert seen <= {("from-x", 5), ("from-llmd", 5)}, seen
        # llm-d.ai now reads alone: its objects' deletion does not bring the x-k8s.io ones back
        await call(custom.delete_namespaced_custom_object, LLMD_GROUP, "v1alpha2", ns, "inferencemodelrewrites", "rw")
        await wait_until(lambda: ds.rewrites.pick("m", rng) is None, "llm-d.ai read alone")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
