"""Deletion: preconditions, finalizers, namespace termination, the cascade when a CRD goes,
and garbage collection of dependents (ownerReferences), foreground or orphaning."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from infergate.apiserver.errors import APIError, conflict
from infergate.apiserver.handlers.common import Committer, Target, external, json_response, matchers, meta
from infergate.apiserver.handlers.crds import is_crd
from infergate.apiserver.resources import ResourceRegistry
from infergate.apiserver.store import ObjectKey
from infergate.util.clock import utc_now

PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")


def _own_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` whose metadata map (the only part deletion changes) is its own: no
    walk over the rest of the object, however deep it is."""
    return {**obj, "metadata": dict(obj.get("metadata") or {})}


def _is_namespace(group: str, resource: str) -> bool:
    return (group, resource) == ("", "namespaces")


class Deleter:
    """Deletes objects and everything their deletion entails."""

    def __init__(self, committer: Committer, registry: ResourceRegistry) -> None:
        self.committer = committer
        self.store = committer.store
        self.registry = registry

    def delete(self, target: Target, options: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        """``DELETE`` of one object with its DeleteOptions (preconditions, propagationPolicy)."""
        rtype = target.rtype
        current = self.committer.get(target)
        obj_meta = meta(current)
        name = obj_meta.get("name", "")
        preconditions = options.get("preconditions") or {}
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != obj_meta.get("resourceVersion"):
            raise conflict(rtype.group_resource, name, rtype.group, rtype.resource)
        if preconditions.get("uid") and preconditions["uid"] != obj_meta.get("uid"):
            raise conflict(rtype.group_resource, name, rtype.group, rtype.resource)
        if _is_namespace(rtype.group, rtype.resource) and name in PROTECTED_NAMESPACES:
            raise APIError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                           {"name": name, "kind": "namespaces"})
        if dry_run:
            return current
        orphan = options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents") is True
        return self.delete_object(target.key(name), current, orphan)

    def delete_collection(self, request: web.Request, target: Target, dry_run: bool) -> web.Response:
        labels, fields = matchers(request)
        rtype = target.rtype
        items = [o for o in self.store.list_objects(rtype.group, rtype.resource, target.namespace)
                 if labels(o) and fields(o)]
        deleted = []
        for item in items:
            key = ObjectKey(rtype.group, rtype.resource, meta(item).get("namespace", ""), meta(item)["name"])
            deleted.append(external(target, item if dry_run else self.delete_object(key, item)))
        return json_response({"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version(target.version),
                              "metadata": {"resourceVersion": str(self.store.resource_version)}, "items": deleted})

    def delete_object(self, key: ObjectKey, current: dict[str, Any], orphan: bool = False) -> dict[str, Any]:
        """Mark for deletion while finalizers remain (a namespace: until it is empty), else remove."""
        obj_meta = meta(current)
        is_namespace = _is_namespace(key.group, key.resource)
        if obj_meta.get("finalizers") or is_namespace:
            if not obj_meta.get("deletionTimestamp"):
                obj = _own_metadata(current)
                meta(obj)["deletionTimestamp"] = utc_now()
                meta(obj)["deletionGracePeriodSeconds"] = 0
                if is_namespace:
                    obj["status"] = {"phase": "Terminating"}
                current = self.committer.commit(key, obj, "MODIFIED", current)
            if is_namespace:
                for child_key, child in self.store.list_namespace(key.name):
                    self.delete_object(child_key, child)
                if not self.store.list_namespace(key.name) and not meta(current).get("finalizers"):
                    return self.remove(key, current)
            return current
        return self.remove(key, current, orphan)

    def remove(self, key: ObjectKey, obj: dict[str, Any], orphan: bool = False) -> dict[str, Any]:
        """Delete for good, then cascade (CRD objects, namespace emptiness, dependents)."""
        obj = _own_metadata(obj)
        self.committer.commit(key, obj, "DELETED")
        if is_crd(key.group, key.resource):
            rtype = self.registry.unregister(key.name)
            if rtype is not None:
                for item in self.store.list_objects(rtype.group, rtype.resource, None):
                    item_meta = meta(item)
                    item_key = ObjectKey(rtype.group, rtype.resource, item_meta.get("namespace", ""), item_meta["name"])
                    self.committer.commit(item_key, item, "DELETED")
                self.committer.hub.close_resource(rtype.group, rtype.resource)
        if key.namespace:
            ns_key = ObjectKey("", "namespaces", "", key.namespace)
            ns = self.store.get(ns_key)
            if ns and meta(ns).get("deletionTimestamp") and not self.store.list_namespace(key.namespace) \
                    and not meta(ns).get("finalizers"):
                self.remove(ns_key, ns)
        uid = meta(obj).get("uid")
        if uid:
            self._collect_dependents(uid, orphan)
        return obj

    def _collect_dependents(self, uid: str, orphan: bool) -> None:
        """Garbage collection: delete (or orphan) objects whose ownerReferences name ``uid``."""
        for dep_key, dep in self.store.find_dependents(uid):
            refs = [r for r in meta(dep).get("ownerReferences") or [] if r.get("uid") != uid]
            if orphan or refs:
                if refs:
                    meta(dep)["ownerReferences"] = refs
                else:
                    meta(dep).pop("ownerReferences", None)
                self.committer.commit(dep_key, dep, "MODIFIED", self.store.get(dep_key))
            elif self.store.get(dep_key) is not None:
                self.delete_object(dep_key, dep)
