"""The Kubernetes API as the source of resources, with the official ``kubernetes`` client.

One list+watch per kind (a daemon thread each, as the client blocks), cluster-wide:
GatewayClass, Gateway, HTTPRoute, ReferenceGrant, InferencePool (both groups),
InferenceObjective, InferenceModel, Service, Pod, Namespace, EndpointSlice. A kind the
server does not serve (its CRD is not installed: 404) is retried every ``retry_delay``
seconds, so installing the CRD later works. Watches resume from the last resourceVersion
and relist on 410 Gone.

Statuses are written through the status subresource: GET the object, merge our part into
its status (``infergate.controller.status.merge_status``), PUT ``.../status`` with the
object's resourceVersion, and on 409 Conflict start again (at most ``conflict_retries``).
Works against any conformant API server, including ``infergate apiserver``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import threading
from typing import Any

from infergate.controller.resources import CLUSTER_SCOPED, KINDS, ObjectRef, Resource, split_api_version
from infergate.controller.snapshot import Snapshot
from infergate.controller.status import merge_status
from infergate.controller.translator.options import TranslationResult

log = logging.getLogger(__name__)

PLURALS: dict[tuple[str, str], str] = {
    ("gateway.networking.k8s.io", "GatewayClass"): "gatewayclasses",
    ("gateway.networking.k8s.io", "Gateway"): "gateways",
    ("gateway.networking.k8s.io", "HTTPRoute"): "httproutes",
    ("gateway.networking.k8s.io", "ReferenceGrant"): "referencegrants",
    ("inference.networking.k8s.io", "InferencePool"): "inferencepools",
    ("inference.networking.x-k8s.io", "InferencePool"): "inferencepools",
    ("inference.networking.x-k8s.io", "InferenceObjective"): "inferenceobjectives",
    ("inference.networking.x-k8s.io", "InferenceModel"): "inferencemodels",
    ("", "Service"): "services",
    ("", "Pod"): "pods",
    ("", "Namespace"): "namespaces",
    ("discovery.k8s.io", "EndpointSlice"): "endpointslices",
}
STATUS_KINDS = {("gateway.networking.k8s.io", "GatewayClass"), ("gateway.networking.k8s.io", "Gateway"),
                ("gateway.networking.k8s.io", "HTTPRoute"), ("inference.networking.k8s.io", "InferencePool"),
                ("inference.networking.x-k8s.io", "InferencePool")}


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An ``ApiClient`` from a kubeconfig file, else in-cluster config, else the default kubeconfig."""
    from kubernetes import client, config

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(context=context)  # type: ignore[no-untyped-call]
    return client.ApiClient()


class _KindWatcher:
    """List + watch of one kind in a daemon thread; keeps ``objects`` current."""

    def __init__(self, provider: KubernetesProvider, group: str, kind: str) -> None:
        self.provider = provider
        self.group, self.kind = group, kind
        self.api_version = KINDS[(group, kind)]
        self.version = split_api_version(self.api_version)[1]
        self.plural = PLURALS[(group, kind)]
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.synced = threading.Event()
        self.served = True
        self.thread = threading.Thread(target=self._run, name=f"gateway-watch-{kind}", daemon=True)

    def list_fn(self) -> Any:
        client: Any = importlib.import_module("kubernetes.client")

        api = self.provider.api_client
        if self.group == "":
            core = client.CoreV1Api(api)
            return {"Pod": core.list_pod_for_all_namespaces, "Service": core.list_service_for_all_namespaces,
                    "Namespace": core.list_namespace}[self.kind]
        if self.group == "discovery.k8s.io":
            return client.DiscoveryV1Api(api).list_endpoint_slice_for_all_namespaces
        custom = client.CustomObjectsApi(api)

        def list_custom(**kwargs: Any) -> Any:
            return custom.list_cluster_custom_object(self.group, self.version, self.plural, **kwargs)

        return list_custom

    def _key(self, obj: dict[str, Any]) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return (meta.get("namespace") or "", str(meta.get("name") or ""))

    def _normalize(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("apiVersion", self.api_version)
        obj.setdefault("kind", self.kind)
        return obj

    def _run(self) -> None:
        watch: Any = importlib.import_module("kubernetes.watch")
        ApiException: Any = importlib.import_module("kubernetes.client.exceptions").ApiException

        stop = self.provider.stop_event
        list_fn = self.list_fn()
        while not stop.is_set():
            try:
                response = list_fn(_preload_content=False)
                listed = json.loads(response.data)
                version = (listed.get("metadata") or {}).get("resourceVersion")
                self.objects = {self._key(o): self._normalize(o) for o in listed.get("items") or []}
                self.served = True
                self.synced.set()
                self.provider.notify()
                while not stop.is_set():
                    w = watch.Watch()
                    for event in w.stream(list_fn, resource_version=version, allow_watch_bookmarks=True,
                                          timeout_seconds=self.provider.watch_timeout, deserialize=False):
                        etype, obj = event.get("type"), event.get("object")
                        if etype in ("ADDED", "MODIFIED") and isinstance(obj, dict):
                            self.objects[self._key(obj)] = self._normalize(obj)
                            self.provider.notify()
                        elif etype == "DELETED" and isinstance(obj, dict):
                            self.objects.pop(self._key(obj), None)
                            self.provider.notify()
                        if stop.is_set():
                            w.stop()
                            break
                    version = w.resource_version or version
            except ApiException as exc:
                if exc.status == 410:
                    log.info("watch %s: 410 Gone, relisting", self.kind)
                    continue
                if exc.status == 404:
                    if self.served:
                        log.info("%s.%s is not served (CRD not installed?); retrying", self.plural, self.group)
                    self.served = False
                    self.objects = {}
                    self.synced.set()  # nothing to wait for
                else:
                    log.warning("watch %s failed: %s; retrying", self.kind, exc)
            except Exception as exc:
                log.warning("watch %s failed: %s; retrying", self.kind, exc)
            stop.wait(self.provider.retry_delay)


class KubernetesProvider:
    def __init__(self, api_client: Any, *, watch_timeout: int = 30, retry_delay: float = 2.0,
                 conflict_retries: int = 5) -> None:
        self.api_client = api_client
        self.watch_timeout = watch_timeout
        self.retry_delay = retry_delay
        self.conflict_retries = conflict_retries
        self.changed = asyncio.Event()
        self.stop_event = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchers = [_KindWatcher(self, group, kind) for group, kind in KINDS]

    def notify(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.changed.set)

    @property
    def synced(self) -> bool:
        return all(w.synced.is_set() for w in self._watchers)

    async def start(self, sync_timeout: float = 30.0) -> None:
        self._loop = asyncio.get_running_loop()
        for watcher in self._watchers:
            watcher.thread.start()
        deadline = self._loop.time() + sync_timeout
        while not self.synced and self._loop.time() < deadline:
            await asyncio.sleep(0.05)
        if not self.synced:
            missing = [w.kind for w in self._watchers if not w.synced.is_set()]
            log.warning("initial list not complete after %.0fs for: %s", sync_timeout, ", ".join(missing))
        self.changed.set()

    def snapshot(self) -> Snapshot:
        self.changed.clear()
        resources = []
        for watcher in self._watchers:
            for obj in list(watcher.objects.values()):
                try:
                    resources.append(Resource.from_dict(obj))
                except ValueError as exc:
                    log.warning("skipping %s: %s", watcher.kind, exc)
        return Snapshot.of(resources)

    async def write_statuses(self, result: TranslationResult, controller_name: str) -> int:
        written = 0
        cache = {(w.group, w.kind): w for w in self._watchers}
        for ref, desired in sorted(result.statuses.items()):
            if (ref.group, ref.kind) not in STATUS_KINDS:
                continue
            cached = cache[(ref.group, ref.kind)].objects.get((ref.namespace, ref.name))
            if cached is not None and merge_status(ref, cached.get("status"), desired, controller_name=controller_name,
                                                   foreign_gateways=result.foreign_gateways) is None:
                continue  # the watch cache already shows this status: no API call
            try:
                if await asyncio.to_thread(self._write_status, ref, desired, controller_name,
                                           result.foreign_gateways):
                    written += 1
            except Exception as exc:
                log.error("writing the status of %s failed: %s", ref, exc)
        return written

    def _write_status(self, ref: ObjectRef, desired: dict[str, Any], controller_name: str,
                      foreign: frozenset[ObjectRef]) -> bool:
        client: Any = importlib.import_module("kubernetes.client")
        ApiException: Any = importlib.import_module("kubernetes.client.exceptions").ApiException

        custom = client.CustomObjectsApi(self.api_client)
        version = split_api_version(KINDS[(ref.group, ref.kind)])[1]
        plural = PLURALS[(ref.group, ref.kind)]
        cluster = (ref.group, ref.kind) in CLUSTER_SCOPED
        for _ in range(self.conflict_retries):
            try:
                if cluster:
                    current = custom.get_cluster_custom_object(ref.group, version, plural, ref.name)
                else:
                    current = custom.get_namespaced_custom_object(ref.group, version, ref.namespace, plural, ref.name)
            except ApiException as exc:
                if exc.status == 404:
                    return False  # deleted meanwhile
                raise
            merged = merge_status(ref, current.get("status"), desired, controller_name=controller_name,
                                  foreign_gateways=foreign)
            if merged is None:
                return False
            body = dict(current)
            body["status"] = merged
            try:
                if cluster:
                    custom.replace_cluster_custom_object_status(ref.group, version, plural, ref.name, body)
                else:
                    custom.replace_namespaced_custom_object_status(ref.group, version, ref.namespace, plural,
                                                                   ref.name, body)
                return True
            except ApiException as exc:
                if exc.status == 409:
                    continue  # someone else wrote: read again and re-merge
                if exc.status == 404:
                    return False
                raise
        raise RuntimeError(f"status of {ref}: still conflicting after {self.conflict_retries} attempts")

    async def stop(self) -> None:
        self.stop_event.set()
        self._loop = None
