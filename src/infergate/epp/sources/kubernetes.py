"""The pool from a Kubernetes API, with the official ``kubernetes`` client: list + watch.

Four watches, each in its own daemon thread (the client blocks): the InferencePool (by
name, in the group given by ``pool_group``), Pods in the namespace, InferenceObjectives
(``inference.networking.x-k8s.io/v1alpha2``) and, for preview pools, InferenceModels.
Each watch lists, applies the full list, then watches from the list's resourceVersion and
resumes from the last seen one; a 410 Gone (or any error) relists after a short back-off.
Events go to the datastore's loop with ``call_soon_threadsafe`` (the datastore is
single-loop). Works against any API server, including infergate's embedded one.

``KubernetesEventHandler`` holds the event logic and is tested without a server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from infergate.epp.datastore import GA_GROUP, POOL_GROUPS, PREVIEW_GROUP, Datastore
from infergate.epp.sources.base import SourceError
from infergate.epp.sources.convert import (
    model_from_object,
    objective_from_object,
    pod_from_object,
    pool_from_object,
)

log = logging.getLogger(__name__)

OBJECTIVE_GVP = (PREVIEW_GROUP, "v1alpha2", "inferenceobjectives")
MODEL_GVP = (PREVIEW_GROUP, "v1alpha2", "inferencemodels")
POOL_VERSION = {GA_GROUP: "v1", PREVIEW_GROUP: "v1alpha2"}


class KubernetesEventHandler:
    """Applies listed objects and watch events (plain dicts, as on the wire) to a datastore."""

    def __init__(self, datastore: Datastore, pool_name: str, pool_group: str = GA_GROUP) -> None:
        self.datastore = datastore
        self.pool_name = pool_name
        self.pool_group = pool_group

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
        self.datastore.replace_pods(pod_from_object(i) for i in items)

    def pod_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        pod = pod_from_object(obj)
        if kind == "DELETED":
            self.datastore.delete_pod(pod.name)
        else:
            self.datastore.upsert_pod(pod)

    # objectives
    def objective_list(self, items: Iterable[Mapping[str, Any]]) -> None:
        objectives = []
        for item in items:
            try:
                objective = objective_from_object(item, self.pool_name, self.pool_group)
            except SourceError as exc:
                log.error("InferenceObjective ignored: %s", exc)
                continue
            if objective is not None:
                objectives.append(objective)
        self.datastore.replace_objectives(objectives)

    def objective_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        name = str(obj.get("metadata", {}).get("name", ""))
        objective = None
        if kind != "DELETED" and not obj.get("metadata", {}).get("deletionTimestamp"):
            try:
                objective = objective_from_object(obj, self.pool_name, self.pool_group)
            except SourceError as exc:
                log.error("InferenceObjective %s ignored: %s", name, exc)
        if objective is None:  # deleted, deleting, or (now) for another pool
            self.datastore.delete_objective(name)
        else:
            self.datastore.upsert_objective(objective)

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


ListFn = Callable[..., Any]


class _Watcher:
    """List + watch of one resource in a daemon thread; resumes; relists on 410 or errors."""

    def __init__(self, name: str, list_fn: ListFn, on_list: Callable[[list[dict[str, Any]]], None],
                 on_event: Callable[[str, dict[str, Any]], None], post: Callable[..., None],
                 stop: threading.Event, watch_timeout: int, retry_delay: float) -> None:
        self.name = name
        self.list_fn = list_fn
        self.on_list = on_list
        self.on_event = on_event
        self.post = post
        self.stop = stop
        self.watch_timeout = watch_timeout
        self.retry_delay = retry_delay
        self.synced = threading.Event()
        self.resumes = 0  # watch streams that ended and were resumed (server timeout)
        self.lists = 0
        self.thread = threading.Thread(target=self._run, name=f"epp-watch-{name}", daemon=True)

    def _run(self) -> None:
        import importlib

        watch: Any = importlib.import_module("kubernetes.watch")
        ApiException: Any = importlib.import_module("kubernetes.client.exceptions").ApiException

        while not self.stop.is_set():
            try:
                response = self.list_fn(_preload_content=False)
                listed = json.loads(response.data)
                resource_version = listed.get("metadata", {}).get("resourceVersion")
                self.post(self.on_list, listed.get("items") or [])
                self.lists += 1
                self.synced.set()
                while not self.stop.is_set():
                    w = watch.Watch()
                    for event in w.stream(self.list_fn, resource_version=resource_version,
                                          timeout_seconds=self.watch_timeout, allow_watch_bookmarks=True,
                                          deserialize=False):
                        kind = event.get("type")
                        obj = event.get("object")
                        if isinstance(obj, dict):
                            # resume point (raw events: the client does not track it for us)
                            resource_version = obj.get("metadata", {}).get("resourceVersion") or resource_version
                            if kind in ("ADDED", "MODIFIED", "DELETED"):
                                self.post(self.on_event, kind, obj)
                        if self.stop.is_set():
                            w.stop()
                            break
                    self.resumes += 1
            except ApiException as exc:
                if exc.status == 410:
                    log.info("watch %s expired (410 Gone), relisting", self.name)
                    continue
                if exc.status == 404:
                    log.debug("watch %s: resource not served (404); retrying", self.name)
                else:
                    log.warning("watch %s failed: %s; retrying", self.name, exc)
            except Exception as exc:  # connection errors: keep trying, bounded by stop
                log.warning("watch %s failed: %s; retrying", self.name, exc)
            self.stop.wait(self.retry_delay)


class KubernetesSource:
    """``PoolSource`` backed by a Kubernetes API server (any conformant one)."""

    def __init__(self, pool_name: str, namespace: str = "default", pool_group: str = GA_GROUP, *,
                 api_client: Any = None, watch_timeout: int = 60, retry_delay: float = 1.0) -> None:
        if pool_group not in POOL_GROUPS:
            raise SourceError(f"--pool-group: must be one of {', '.join(POOL_GROUPS)}, got {pool_group!r}")
        self.pool_name = pool_name
        self.namespace = namespace
        self.pool_group = pool_group
        self.api_client = api_client
        self.watch_timeout = watch_timeout
        self.retry_delay = retry_delay
        self._watchers: list[_Watcher] = []

    @property
    def synced(self) -> bool:
        return bool(self._watchers) and all(w.synced.is_set() for w in self._watchers)

    def _api_client(self) -> Any:
        if self.api_client is not None:
            return self.api_client
        import importlib

        client: Any = importlib.import_module("kubernetes.client")
        config: Any = importlib.import_module("kubernetes.config")
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        return client.ApiClient()

    async def run(self, datastore: Datastore) -> None:
        from kubernetes import client

        loop = asyncio.get_running_loop()
        api = self._api_client()
        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        handler = KubernetesEventHandler(datastore, self.pool_name, self.pool_group)
        stop = threading.Event()
        ns = self.namespace

        def post(fn: Callable[..., None], *args: Any) -> None:
            if stop.is_set():
                return
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop closed meanwhile
                stop.set()

        def custom_list(group: str, version: str, plural: str, **extra: Any) -> ListFn:
            def list_fn(**kwargs: Any) -> Any:
                return custom.list_namespaced_custom_object(group, version, ns, plural, **extra, **kwargs)
            return list_fn

        def pod_list(**kwargs: Any) -> Any:
            return core.list_namespaced_pod(ns, **kwargs)

        pool_plural = (self.pool_group, POOL_VERSION[self.pool_group], "inferencepools")
        specs: list[tuple[str, ListFn, Callable[..., None], Callable[..., None]]] = [
            ("pool", custom_list(*pool_plural, field_selector=f"metadata.name={self.pool_name}"),
             handler.pool_list, handler.pool_event),
            ("pods", pod_list, handler.pod_list, handler.pod_event),
            ("objectives", custom_list(*OBJECTIVE_GVP), handler.objective_list, handler.objective_event),
        ]
        if self.pool_group == PREVIEW_GROUP:
            specs.append(("models", custom_list(*MODEL_GVP), handler.model_list, handler.model_event))
        self._watchers = [_Watcher(name, fn, on_list, on_event, post, stop, self.watch_timeout, self.retry_delay)
                          for name, fn, on_list, on_event in specs]
        for watcher in self._watchers:
            watcher.thread.start()
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            stop.set()
            # threads notice within one watch timeout at worst; they are daemons and touch
            # the loop only through post(), which checks that it is still open
