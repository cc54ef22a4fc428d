"""The Kubernetes API as the source of resources, through ``infergate.kube``.

One :class:`~infergate.kube.watch.ListWatch` task per kind of ``SNAPSHOT_KINDS``,
cluster-wide, on the controller's event loop: GatewayClass, Gateway, HTTPRoute,
ReferenceGrant, InferencePool (both groups), InferenceObjective, InferenceModel, Service,
Pod, Namespace, EndpointSlice. A kind the server does not serve (its CRD is not installed:
404) counts as empty and is retried with back-off, so installing the CRD later works.
Watches resume from the last resourceVersion and relist on 410 Gone.

Statuses are written through the status subresource: GET the object, merge our part into
its status (``infergate.controller.status.merge_status``), PUT ``.../status`` with the
object's resourceVersion, and on 409 Conflict start again (at most ``conflict_retries``).
Works against any conformant API server, including ``infergate apiserver``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from infergate.controller.resources import SNAPSHOT_KINDS, ObjectRef, ObservedObject
from infergate.controller.snapshot import Snapshot
from infergate.controller.status import merge_status
from infergate.controller.translator.options import TranslationResult
from infergate.kube import kinds
from infergate.kube.client import KubeClient
from infergate.kube.config import load_config
from infergate.kube.errors import Conflict, NotFound
from infergate.kube.kinds import Kind
from infergate.kube.watch import ListWatch
from infergate.util.tasks import cancel_and_wait

log = logging.getLogger(__name__)

STATUS_KINDS = {("gateway.networking.k8s.io", "GatewayClass"), ("gateway.networking.k8s.io", "Gateway"),
                ("gateway.networking.k8s.io", "HTTPRoute"), ("inference.networking.k8s.io", "InferencePool"),
                ("inference.networking.x-k8s.io", "InferencePool")}


def load_api_client(kubeconfig: str | Path | None = None, context: str | None = None) -> KubeClient:
    """A client from a kubeconfig file, else in-cluster config, else the default kubeconfig."""
    return KubeClient(load_config(kubeconfig, context))


class _KindCache:
    """The objects of one kind, kept current by its list/watch."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    @staticmethod
    def _key(obj: dict[str, Any]) -> tuple[str, str]:
        meta = obj.get("metadata") or {}
        return (meta.get("namespace") or "", str(meta.get("name") or ""))

    def _normalize(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj.setdefault("apiVersion", self.kind.api_version)
        obj.setdefault("kind", self.kind.kind)
        return obj

    def replace(self, items: list[dict[str, Any]]) -> None:
        self.objects = {self._key(o): self._normalize(o) for o in items}

    def apply(self, event_type: str, obj: dict[str, Any]) -> None:
        if event_type == "DELETED":
            self.objects.pop(self._key(obj), None)
        else:
            self.objects[self._key(obj)] = self._normalize(obj)


class KubernetesProvider:
    def __init__(self, client: KubeClient, *, watch_timeout: int = 30, retry_delay: float = 2.0,
                 conflict_retries: int = 5) -> None:
        self.client = client
        self.watch_timeout = watch_timeout
        self.retry_delay = retry_delay
        self.conflict_retries = conflict_retries
        self.changed = asyncio.Event()
        self._caches = {k.gk: _KindCache(k) for k in SNAPSHOT_KINDS}
        self._by_resource = {(cache.kind.group, cache.kind.plural): self._list_watch(cache)
                             for cache in self._caches.values()}
        self._watches = list(self._by_resource.values())
        # A kind whose CRD is not installed yet is polled every retry_delay; watching the CRDs
        # wakes it as soon as its CRD appears, so a pool applied right after its CRD is not an
        # invalid backend for a route that arrives in the next two seconds.
        self._crd_watch = ListWatch(client, kinds.CRDS.path(), on_list=self._crds_listed,
                                    on_event=lambda _type, crd: self._crd_changed(crd), name="crd-wakeup",
                                    watch_timeout=watch_timeout, retry_delay=retry_delay, missing_is_empty=True)
        self._tasks: list[asyncio.Task[None]] = []

    def _list_watch(self, cache: _KindCache) -> ListWatch:
        def on_list(items: list[dict[str, Any]]) -> None:
            cache.replace(items)
            self.changed.set()

        def on_event(event_type: str, obj: dict[str, Any]) -> None:
            cache.apply(event_type, obj)
            self.changed.set()

        return ListWatch(self.client, cache.kind.path(), on_list=on_list, on_event=on_event,
                         name=cache.kind.qualified, watch_timeout=self.watch_timeout, retry_delay=self.retry_delay,
                         missing_is_empty=True)

    def _crds_listed(self, crds: list[dict[str, Any]]) -> None:
        for crd in crds:
            self._crd_changed(crd)

    def _crd_changed(self, crd: dict[str, Any]) -> None:
        names = (crd.get("spec") or {}).get("names") or {}
        watch = self._by_resource.get(((crd.get("spec") or {}).get("group", ""), names.get("plural", "")))
        if watch is not None and not watch.served:
            watch.wake()

    @property
    def synced(self) -> bool:
        return all(w.synced.is_set() for w in self._watches)

    async def start(self, sync_timeout: float = 30.0) -> None:
        await self.client.open()
        self._tasks = [asyncio.create_task(w.run(), name=f"gateway-watch-{w.name}") for w in self._watches]
        self._tasks.append(asyncio.create_task(self._crd_watch.run(), name="gateway-watch-crds"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + sync_timeout
        while not self.synced and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if not self.synced:
            missing = [w.name for w in self._watches if not w.synced.is_set()]
            log.warning("initial list not complete after %.0fs for: %s", sync_timeout, ", ".join(missing))
        self.changed.set()

    def snapshot(self) -> Snapshot:
        self.changed.clear()
        resources = []
        for cache in self._caches.values():
            for obj in list(cache.objects.values()):
                try:
                    resources.append(ObservedObject.from_dict(obj))
                except ValueError as exc:
                    log.warning("skipping %s: %s", cache.kind.kind, exc)
        return Snapshot.of(resources)

    async def write_statuses(self, result: TranslationResult, controller_name: str) -> int:
        written = 0
        for ref, desired in sorted(result.statuses.items()):
            if (ref.group, ref.kind) not in STATUS_KINDS:
                continue
            cached = self._caches[(ref.group, ref.kind)].objects.get((ref.namespace, ref.name))
            if cached is not None and merge_status(ref, cached.get("status"), desired, controller_name=controller_name,
                                                   foreign_gateways=result.foreign_gateways) is None:
                continue  # the watch cache already shows this status: no API call
            try:
                if await self._write_status(ref, desired, controller_name, result.foreign_gateways):
                    written += 1
            except Exception as exc:
                log.error("writing the status of %s failed: %s", ref, exc)
        return written

    async def _write_status(self, ref: ObjectRef, desired: dict[str, Any], controller_name: str,
                            foreign: frozenset[ObjectRef]) -> bool:
        kind = self._caches[(ref.group, ref.kind)].kind
        path = kind.path(ref.namespace or None, ref.name)
        for _ in range(self.conflict_retries):
            current = await self.client.get(path)
            if current is None:
                return False  # deleted meanwhile
            merged = merge_status(ref, current.get("status"), desired, controller_name=controller_name,
                                  foreign_gateways=foreign)
            if merged is None:
                return False
            body = dict(current)
            body["status"] = merged
            try:
                await self.client.replace(path + "/status", body)
                return True
            except Conflict:
                continue  # someone else wrote: read again and re-merge
            except NotFound:
                return False
        raise RuntimeError(f"status of {ref}: still conflicting after {self.conflict_retries} attempts")

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        await self.client.close()
