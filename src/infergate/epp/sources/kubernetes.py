"""The pool from a Kubernetes API, through ``infergate.kube``: list + watch.

Three or four :class:`~infergate.kube.watch.ListWatch` tasks on the datastore's loop: the
InferencePool (by name, in the group given by ``pool_group``), Pods in the namespace,
InferenceObjectives, InferenceModelRewrites of both groups (x-k8s.io and llm-d.ai; a group
whose CRD is not installed counts as empty, and ``llm-d.ai`` wins when installed, see
``epp/rewrite.py``; CRDs installed while the EPP runs take over with their first object, or after
:data:`LATE_CRD_GRACE_S`) and, for preview pools, InferenceModels. Each lists, applies the full
list, then watches from the list's resourceVersion and resumes from the last seen one; a 410
Gone relists, other errors back off. Works against any API server, including infergate's
embedded one.

``KubernetesEventHandler`` holds the event logic and is tested without a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from infergate.epp.datastore import GA_GROUP, POOL_GROUPS, PREVIEW_GROUP, Datastore, Objective
from infergate.epp.pick_sharing import PodPeers
from infergate.epp.rewrite import LLMD_GROUP, XK8S_GROUP, ModelRewrite, rewrite_from_object
from infergate.epp.sources.base import SourceError
from infergate.epp.sources.convert import (
    model_from_object,
    objective_from_object,
    pod_from_object,
    pool_from_object,
)
from infergate.kube import kinds
from infergate.kube.client import KubeClient
from infergate.kube.config import load_config
from infergate.kube.errors import KubeError
from infergate.kube.watch import ListWatch

log = logging.getLogger(__name__)


# how long a newly installed llm-d.ai CRD may stay empty before this EPP reads it alone (below
# `migrate llm-d`'s 5 s wait-switch, with the 1 s poll of an unserved resource)
LATE_CRD_GRACE_S = 2.0
# call fn after delay seconds; False: no timer could be set (then the caller acts at once)
CallLater = Callable[[float, Callable[[], None]], bool]


def _loop_call_later(delay: float, fn: Callable[[], None]) -> bool:
    try:
        asyncio.get_running_loop().call_later(delay, fn)
    except RuntimeError:  # no running loop (a handler driven synchronously)
        return False
    return True


class KubernetesEventHandler:
    """Applies listed objects and watch events (plain dicts, as on the wire) to a datastore."""

    def __init__(self, datastore: Datastore, pool_name: str, pool_group: str = GA_GROUP, *,
                 late_crd_grace_s: float = LATE_CRD_GRACE_S, call_later: CallLater | None = None,
                 peer_pods: PodPeers | None = None) -> None:
        self.datastore = datastore
        self.peer_pods = peer_pods  # pick sharing's peers among the namespace's pods
        self.pool_name = pool_name
        self.pool_group = pool_group
        self._objectives: dict[str, dict[str, Objective]] = {}  # group -> name -> objective
        self._objectives_served: set[str] = set()
        self.late_crd_grace_s = late_crd_grace_s
        self._call_later = call_later or _loop_call_later
        self._unserved_seen: set[str] = set()  # kinds whose llm-d.ai list answered "not served" once
        self._pending: dict[str, int] = {}  # kind -> token of its deferred switch to llm-d.ai
        self._tokens = 0

    # llm-d.ai installed while running ----------------------------------------------------
    def _llmd_served(self, kind: str, served: bool, has_objects: bool, apply: Callable[[bool], None]) -> None:
        """Apply whether ``kind``'s llm-d.ai CRD is served. A CRD that appears while this EPP runs
        (its list answered "not served" before) takes over once it holds an object for the pool, or
        ``late_crd_grace_s`` after it appeared, whichever comes first: `migrate llm-d --install-crds`
        copies the objects right after installing the CRDs, and switching in between would apply no
        rewrite (a request for an alias fails) and no objective for that moment. An EPP that starts
        with the CRD installed reads llm-d.ai at once, as the llm-d router does."""
        if not served:
            self._unserved_seen.add(kind)
            self._pending.pop(kind, None)
            apply(False)
        elif has_objects or kind not in self._unserved_seen:
            self._switch_to_llmd(kind, apply)
        elif kind not in self._pending:  # newly installed and still empty: wait for the copies, briefly
            self._tokens += 1
            token = self._pending[kind] = self._tokens

            def settle() -> None:
                if self._pending.get(kind) == token:
                    self._switch_to_llmd(kind, apply)

            if not self._call_later(self.late_crd_grace_s, settle):
                settle()

    def _switch_to_llmd(self, kind: str, apply: Callable[[bool], None]) -> None:
        self._pending.pop(kind, None)
        self._unserved_seen.discard(kind)  # installed for good: a relist reads llm-d.ai at once
        apply(True)

    def _settle_llmd(self, kind: str, apply: Callable[[bool], None]) -> None:
        """An llm-d.ai object arrived: a deferred switch of ``kind`` happens now."""
        if kind in self._pending:
            self._switch_to_llmd(kind, apply)

    def _set_objectives_served(self, served: bool) -> None:
        if served:
            self._objectives_served.add(LLMD_GROUP)
        else:
            self._objectives_served.discard(LLMD_GROUP)
        self._push_objectives()

    def _set_rewrites_installed(self, installed: bool) -> None:
        self.datastore.rewrites.set_installed(LLMD_GROUP, installed)

    # pool
    def pool_list(self, items: Iterable[Mapping[str, Any]]) -> None:
        found = [i for i in items if i.get("metadata", {}).get("name") == self.pool_name]
        if found:
            self.pool_event("ADDED", found[0])
        else:
            self.datastore.remove_pool()

    def pool_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        if obj.get("metadata", {}).get("name") != self.pool_name:
            return
        if kind == "DELETED" or obj.get("metadata", {}).get("deletionTimestamp"):
            self.datastore.remove_pool()
            return
        try:
            self.datastore.set_pool(pool_from_object(obj))
        except SourceError as exc:
            log.error("InferencePool %s ignored: %s", self.pool_name, exc)

    # pods
    def pod_list(self, items: Iterable[Mapping[str, Any]]) -> None:
        items = list(items)
        self.datastore.replace_pods(pod_from_object(i) for i in items)
        if self.peer_pods is not None:
            self.peer_pods.replace(items)

    def pod_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        if self.peer_pods is not None:
            self.peer_pods.event(kind, obj)
        pod = pod_from_object(obj)
        if kind == "DELETED":
            self.datastore.delete_pod(pod.name)
        else:
            self.datastore.upsert_pod(pod)

    # objectives
    def _objective(self, obj: Mapping[str, Any]) -> Objective | None:
        if obj.get("metadata", {}).get("deletionTimestamp"):
            return None
        try:
            return objective_from_object(obj, self.pool_name, self.pool_group)
        except SourceError as exc:
            log.error("InferenceObjective %s ignored: %s", obj.get("metadata", {}).get("name", ""), exc)
            return None

    def _active_objective_group(self) -> str:
        """The group whose objectives the datastore holds: ``llm-d.ai`` when its CRD is installed
        (as the llm-d router), else ``inference.networking.x-k8s.io``."""
        return LLMD_GROUP if LLMD_GROUP in self._objectives_served else XK8S_GROUP

    def _push_objectives(self) -> None:
        self.datastore.replace_objectives(self._objectives.get(self._active_objective_group(), {}).values())

    def objective_list(self, items: Iterable[Mapping[str, Any]], group: str = XK8S_GROUP,
                       served: bool = True) -> None:
        """A full list of one group's objectives; ``served`` False: its CRD is not installed."""
        found = {o.name: o for o in map(self._objective, items) if o is not None}
        self._objectives[group] = found
        if group == LLMD_GROUP:  # whether llm-d.ai is (now) the active group; pushed once when it is
            # decided (a switch waiting for the copies changes nothing yet: x-k8s.io stays active)
            self._llmd_served("InferenceObjective", served, bool(found), self._set_objectives_served)
            return
        if served:
            self._objectives_served.add(group)
        else:
            self._objectives_served.discard(group)
        self._push_objectives()

    def objective_event(self, kind: str, obj: Mapping[str, Any], group: str = XK8S_GROUP) -> None:
        name = str(obj.get("metadata", {}).get("name", ""))
        objective = None if kind == "DELETED" else self._objective(obj)
        of_group = self._objectives.setdefault(group, {})
        if objective is None:  # deleted, deleting, or (now) for another pool
            of_group.pop(name, None)
        else:
            of_group[name] = objective
            if group == LLMD_GROUP and "InferenceObjective" in self._pending:
                self._settle_llmd("InferenceObjective", self._set_objectives_served)  # switches, pushes
                return
        if group == self._active_objective_group():  # the other group's objects wait in ``_objectives``
            self._push_objectives()

    # InferenceModelRewrites (GA pools; both groups)
    def _rewrite(self, obj: Mapping[str, Any]) -> ModelRewrite | None:
        if obj.get("metadata", {}).get("deletionTimestamp"):
            return None
        return rewrite_from_object(obj, self.pool_name, self.pool_group)

    def rewrite_list(self, group: str, items: Iterable[Mapping[str, Any]], served: bool = True) -> None:
        """A full list of one group's rewrites; ``served`` False: its CRD is not installed."""
        rewrites = [r for r in map(self._rewrite, items) if r is not None]
        self.datastore.rewrites.replace_group(group, rewrites)
        if group == LLMD_GROUP:
            self._llmd_served("InferenceModelRewrite", served, bool(rewrites), self._set_rewrites_installed)
        else:
            self.datastore.rewrites.set_installed(group, served)

    def rewrite_event(self, group: str, kind: str, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata", {})
        rewrite = None if kind == "DELETED" else self._rewrite(obj)
        if rewrite is None:  # deleted, deleting, or (now) for another pool
            self.datastore.rewrites.delete(group, str(meta.get("namespace", "")), str(meta.get("name", "")))
        else:
            self.datastore.rewrites.upsert(rewrite)
            if group == LLMD_GROUP:
                self._settle_llmd("InferenceModelRewrite", self._set_rewrites_installed)

    # InferenceModels (preview pools)
    def model_list(self, items: Iterable[Mapping[str, Any]]) -> None:
        models = []
        for item in items:
            try:
                model = model_from_object(item, self.pool_name)
            except SourceError as exc:
                log.error("InferenceModel ignored: %s", exc)
                continue
            if model is not None:
                models.append(model)
        self.datastore.replace_models(models)

    def model_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        name = str(obj.get("metadata", {}).get("name", ""))
        model = None
        if kind != "DELETED" and not obj.get("metadata", {}).get("deletionTimestamp"):
            try:
                model = model_from_object(obj, self.pool_name)
            except SourceError as exc:
                log.error("InferenceModel %s ignored: %s", name, exc)
        if model is None:
            self.datastore.delete_model(name)
        else:
            self.datastore.upsert_model(model)


class KubernetesSource:
    """``PoolSource`` backed by a Kubernetes API server (any conformant one).

    ``client`` is used as given (and not closed); without it, one is made from ``kubeconfig``
    (else in-cluster, else the default kubeconfig) when ``run`` starts.
    """

    def __init__(self, pool_name: str, namespace: str = "default", pool_group: str = GA_GROUP, *,
                 client: KubeClient | None = None, kubeconfig: str | Path | None = None, watch_timeout: int = 60,
                 retry_delay: float = 1.0, missing_pool_check: float = 5.0,
                 late_crd_grace_s: float = LATE_CRD_GRACE_S, peer_pods: PodPeers | None = None) -> None:
        if pool_group not in POOL_GROUPS:
            raise SourceError(f"--pool-group: must be one of {', '.join(POOL_GROUPS)}, got {pool_group!r}")
        self.pool_name = pool_name
        self.namespace = namespace
        self.pool_group = pool_group
        self.client = client
        self.kubeconfig = kubeconfig
        self.watch_timeout = watch_timeout
        self.retry_delay = retry_delay
        self.missing_pool_check = missing_pool_check  # seconds between "where is my pool?" checks
        self.late_crd_grace_s = late_crd_grace_s  # KubernetesEventHandler: llm-d.ai CRDs installed while running
        self.peer_pods = peer_pods
        self._watchers: list[ListWatch] = []

    @property
    def synced(self) -> bool:
        return bool(self._watchers) and all(w.synced.is_set() for w in self._watchers)

    @property
    def endpoints_listed(self) -> bool:
        """The pool and the pods have had their first list (what picking an endpoint needs)."""
        first = [w for w in self._watchers if w.name in ("pool", "pods")]
        return len(first) == 2 and all(w.synced.is_set() for w in first)

    def _list_watches(self, client: KubeClient, handler: KubernetesEventHandler) -> list[ListWatch]:
        ns = self.namespace
        specs: list[tuple[str, str, str | None, Callable[..., None], Callable[..., None]]] = [
            ("pool", kinds.POOLS[self.pool_group].path(ns), f"metadata.name={self.pool_name}",
             handler.pool_list, handler.pool_event),
            ("pods", kinds.PODS.path(ns), None, handler.pod_list, handler.pod_event),
            ("objectives", kinds.OBJECTIVES.path(ns), None, handler.objective_list, handler.objective_event),
        ]
        if self.pool_group == PREVIEW_GROUP:
            specs.append(("models", kinds.PREVIEW_MODELS.path(ns), None, handler.model_list, handler.model_event))
        watches = [ListWatch(client, path, on_list=on_list, on_event=on_event, name=name, field_selector=fields,
                             watch_timeout=self.watch_timeout, retry_delay=self.retry_delay)
                   for name, path, fields, on_list, on_event in specs]
        if self.pool_group != PREVIEW_GROUP:
            watches += [self._rewrite_watch(client, handler, group) for group in (XK8S_GROUP, LLMD_GROUP)]
            watches.append(self._llmd_objectives_watch(client, handler))
        return watches

    def _llmd_objectives_watch(self, client: KubeClient, handler: KubernetesEventHandler) -> ListWatch:
        """``llm-d.ai`` InferenceObjectives: once that CRD is installed they replace the x-k8s.io ones."""
        watch = ListWatch(client, kinds.get(LLMD_GROUP, "InferenceObjective").path(self.namespace),
                          on_list=lambda items: None,
                          on_event=lambda kind, obj: handler.objective_event(kind, obj, LLMD_GROUP),
                          name=f"objectives.{LLMD_GROUP}", watch_timeout=self.watch_timeout,
                          retry_delay=self.retry_delay, missing_is_empty=True)
        watch.on_list = lambda items: handler.objective_list(items, LLMD_GROUP, served=watch.served)
        return watch

    def _rewrite_watch(self, client: KubeClient, handler: KubernetesEventHandler, group: str) -> ListWatch:
        """Rewrites of one group; a 404 (CRD not installed) is an empty, unserved list."""
        watch = ListWatch(client, kinds.get(group, "InferenceModelRewrite").path(self.namespace),
                          on_list=lambda items: None, on_event=lambda kind, obj: handler.rewrite_event(group, kind, obj),
                          name=f"rewrites.{group}", watch_timeout=self.watch_timeout, retry_delay=self.retry_delay,
                          missing_is_empty=True)
        watch.on_list = lambda items: handler.rewrite_list(group, items, served=watch.served)
        return watch

    async def missing_pool_message(self, client: KubeClient) -> str | None:
        """Why the pool is not there, for the log: upstream's trap of an EPP whose ``--pool-group``
        was not switched (its pool exists, in the other group). None when the pool exists."""
        ns, name = self.namespace, self.pool_name
        if await _get_or_none(client, kinds.POOLS[self.pool_group].path(ns, name)) is not None:
            return None
        where = f"InferencePool {ns}/{name} not found in group {self.pool_group} (--pool-group {self.pool_group})"
        other = PREVIEW_GROUP if self.pool_group == GA_GROUP else GA_GROUP
        if await _get_or_none(client, kinds.POOLS[other].path(ns, name)) is not None:
            return (f"{where}, but it exists in group {other}: start the EPP with --pool-group {other} "
                    "(or migrate the pool); this EPP serves nothing until then")
        return f"{where}: create it, or check --pool-name / --pool-namespace / --pool-group"

    async def _report_missing_pool(self, client: KubeClient, datastore: Datastore) -> None:
        """While the datastore has no pool, say why (once per distinct reason)."""
        said: str | None = None
        while True:
            await asyncio.sleep(self.missing_pool_check)
            if datastore.pool is not None:
                said = None
                continue
            message = await self.missing_pool_message(client)
            if message is not None and message != said:
                log.warning("%s", message)
            said = message

    async def run(self, datastore: Datastore) -> None:
        """List and watch until cancelled."""
        owned = self.client is None
        client = self.client or KubeClient(load_config(self.kubeconfig))
        await client.open()
        handler = KubernetesEventHandler(datastore, self.pool_name, self.pool_group,
                                         late_crd_grace_s=self.late_crd_grace_s, peer_pods=self.peer_pods)
        self._watchers = self._list_watches(client, handler)
        tasks = [asyncio.create_task(w.run(), name=f"epp-watch-{w.name}") for w in self._watchers]
        tasks.append(asyncio.create_task(self._report_missing_pool(client, datastore), name="epp-missing-pool"))
        try:
            await asyncio.gather(*tasks)  # until cancelled (each task runs forever)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if owned:
                await client.close()


async def _get_or_none(client: KubeClient, path: str) -> dict[str, Any] | None:
    """The object, or None when it (or its resource) is not there or cannot be read."""
    try:
        return await client.get(path)
    except KubeError:
        return None
