"""Writing objects: create and update (the main resource and ``status``), with admission
(defaulting, schema pruning and validation, admission hooks), generation and managedFields."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

from infergate.api.regex import compile_re2
from infergate.apiserver.builtin_rules import builtin_causes, metadata_causes
from infergate.apiserver.builtin_schemas import decode_check
from infergate.apiserver.defaults import apply_schema_defaults, default_pod, default_service, default_workload
from infergate.apiserver.errors import APIError, already_exists, bad_request, conflict, invalid, not_found
from infergate.apiserver.handlers.common import Committer, Target, meta
from infergate.apiserver.handlers.crds import crd_causes, is_crd, register_crd, set_crd_status
from infergate.apiserver.handlers.deletion import Deleter
from infergate.apiserver.patch import record_update_manager
from infergate.apiserver.resources import CRD_GROUP_RESOURCE, ResourceRegistry, ServedResource
from infergate.apiserver.shapes import check_shape
from infergate.apiserver.store import ObjectKey
from infergate.apiserver.validation import Admission, FieldCause, check_schema, prune
from infergate.util.clock import utc_now

_NAME_RE = compile_re2(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without the fields a no-op update may change (times, versions)."""
    clone = copy.deepcopy(obj)
    clone_meta = clone.get("metadata") or {}
    clone_meta.pop("resourceVersion", None)
    clone_meta.pop("managedFields", None)
    clone.pop("apiVersion", None)
    return clone


def initialize(obj: dict[str, Any], key: ObjectKey) -> None:
    """The metadata a new object gets from the server (uid, creationTimestamp, generation)."""
    obj_meta = meta(obj)
    obj_meta["name"] = key.name
    if key.namespace:
        obj_meta["namespace"] = key.namespace
    else:
        obj_meta.pop("namespace", None)
    obj_meta["uid"] = str(uuid.uuid4())
    obj_meta["creationTimestamp"] = utc_now()
    obj_meta["generation"] = 1
    for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
        obj_meta.pop(transient, None)
    if key.resource == "namespaces" and not key.group:
        obj_meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = key.name
        obj["status"] = {"phase": "Active"}


def _unknown_fields(unknown: list[str], drop: Callable[[], None], field_validation: str | None,
                   warnings: list[str] | None) -> None:
    """``fieldValidation`` for unknown fields: Strict refuses them (400), Warn (the default)
    and Ignore ``drop`` them, Warn with one warning each."""
    if not unknown:
        return
    mode = (field_validation or "Warn").lower()
    if mode == "strict":
        raise bad_request("strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown))
    if mode != "ignore" and warnings is not None:
        warnings.extend(f'unknown field "{u}"' for u in unknown)
    drop()


class Writer:
    """Creates and updates objects through admission; an update that clears the last
    finalizer of an object being deleted removes it (through the :class:`Deleter`)."""

    def __init__(self, committer: Committer, registry: ResourceRegistry, admission: Admission,
                 deleter: Deleter) -> None:
        self.committer = committer
        self.store = committer.store
        self.registry = registry
        self.admission = admission
        self.deleter = deleter

    # ------------------------------------------------------------------ admission

    def admit(self, target: Target, obj: dict[str, Any], old: dict[str, Any] | None,
              field_validation: str | None, warnings: list[str] | None = None) -> dict[str, Any]:
        """Defaulting, schema pruning/validation and admission hooks; raises 422 on errors.

        Unknown fields (a CRD's schema or a built-in kind's published type does not have them)
        are refused under ``fieldValidation=Strict``, else dropped, with a warning appended to
        ``warnings`` under ``Warn`` (the default)."""
        rtype = target.rtype
        check_shape(obj, rtype.kind, rtype.crd_name is None)  # every path (create, update, apply) first
        name = meta(obj).get("name", "")
        crd = self.store.get(ObjectKey(*CRD_GROUP_RESOURCE, "", rtype.crd_name)) if rtype.crd_name else None
        obj.setdefault("apiVersion", rtype.api_version(target.version))
        obj.setdefault("kind", rtype.kind)
        causes: list[FieldCause] = []
        schema = rtype.schemas.get(target.version)
        hooked = self.admission.handles(rtype.group, rtype.kind, obj, crd)
        if schema is not None:
            errors, unknown = check_schema(obj, schema, old)
            if not hooked:
                causes.extend(errors)
            _unknown_fields(unknown, lambda: prune(obj, unknown), field_validation, warnings)
        elif rtype.crd_name is None:
            decoded = decode_check(rtype.group, target.version, rtype.kind, obj)
            if decoded.error is not None:
                raise bad_request(f'{rtype.kind} in version "{target.version}" cannot be handled as a '
                                  f"{rtype.kind}: {decoded.error}")
            _unknown_fields(list(decoded.unknown), decoded.drop_unknown, field_validation, warnings)
        if schema is not None and not hooked:
            apply_schema_defaults(obj, schema)
        self._builtin_defaults(rtype, obj, old)
        obj = self.admission.default(rtype.group, obj, crd)
        if not hooked and (not _NAME_RE.match(name) or len(name) > 253):
            causes.append(FieldCause("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain '
                                     "must consist of lower case alphanumeric characters, '-' or '.', and must "
                                     "start and end with an alphanumeric character"))
        causes.extend(metadata_causes(obj))
        if rtype.crd_name is None:
            causes.extend(builtin_causes(rtype.group, rtype.resource, obj))
        if rtype.crd_name is None and is_crd(rtype.group, rtype.resource):
            causes.extend(crd_causes(obj))
        causes.extend(self.admission.validate(rtype.group, obj, old, crd))
        causes = list(dict.fromkeys(causes))
        if causes:
            raise invalid(rtype.kind, name, rtype.group, causes)
        return obj

    def _builtin_defaults(self, rtype: ServedResource, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if rtype.crd_name:
            return
        if (rtype.group, rtype.resource) == ("", "services"):
            old_spec = (old or {}).get("spec") or {}
            spec = obj.setdefault("spec", {})
            for kept in ("clusterIP", "clusterIPs"):  # immutable once allocated
                if old_spec.get(kept) and not spec.get(kept):
                    spec[kept] = old_spec[kept]
            in_use = [str((svc.get("spec") or {}).get("clusterIP") or "")
                      for svc in self.store.list_objects("", "services", None)]
            default_service(obj, in_use)
        elif (rtype.group, rtype.resource) == ("", "pods"):
            default_pod(obj)
        elif rtype.scale is not None:
            default_workload(obj)

    def _check_namespace(self, target: Target, namespace: str) -> None:
        ns = self.store.get(ObjectKey("", "namespaces", "", namespace))
        if ns is None:
            raise not_found("namespaces", namespace, "", "namespaces")
        if meta(ns).get("deletionTimestamp"):
            raise APIError(403, "Forbidden",
                           f'{target.rtype.resource} is forbidden: unable to create new content in namespace '
                           f'{namespace} because it is being terminated',
                           {"name": namespace, "kind": "namespaces"})

    # ------------------------------------------------------------------- create

    def create(self, target: Target, obj: dict[str, Any], manager: str | None, dry_run: bool,
               field_validation: str | None = None, warnings: list[str] | None = None) -> dict[str, Any]:
        rtype = target.rtype
        check_shape(obj, rtype.kind, rtype.crd_name is None)
        obj_meta = meta(obj)
        if obj.get("kind") and obj["kind"] != rtype.kind:
            raise bad_request(f"the API version in the data ({obj.get('apiVersion')}) and kind ({obj['kind']}) do not "
                              f"match the endpoint ({rtype.api_version(target.version)} {rtype.kind})")
        body_group = str(obj.get("apiVersion") or "").rpartition("/")[0]
        if obj.get("apiVersion") and body_group != rtype.group:
            raise bad_request(f"the API version in the data ({obj.get('apiVersion')}) does not match the expected "
                              f"API version ({rtype.api_version(target.version)})")
        name = obj_meta.get("name") or ""
        if not name and obj_meta.get("generateName"):
            name = f"{obj_meta['generateName']}{uuid.uuid4().hex[:5]}"
        if not name:
            raise invalid(rtype.kind, "", rtype.group,
                          [FieldCause("metadata.name", "Required value: name or generateName is required",
                                      "FieldValueRequired")])
        if rtype.namespaced:
            namespace = target.namespace or obj_meta.get("namespace") or "default"
            if obj_meta.get("namespace") and target.namespace and obj_meta["namespace"] != target.namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            self._check_namespace(target, namespace)
        else:
            namespace = ""
        key = ObjectKey(rtype.group, rtype.resource, namespace, name)
        if self.store.get(key) is not None:
            raise already_exists(rtype.group_resource, name, rtype.group, rtype.resource)
        initialize(obj, key)
        obj["apiVersion"] = rtype.api_version(target.version)
        obj["kind"] = rtype.kind
        if rtype.has_status and rtype.crd_name:
            obj.pop("status", None)
        obj = self.admit(target, obj, None, field_validation, warnings)
        record_update_manager(obj, manager, rtype.api_version(target.version))
        if is_crd(rtype.group, rtype.resource):
            set_crd_status(self.registry, obj)
        if dry_run:
            return obj
        self.committer.commit(key, obj, "ADDED")
        if is_crd(rtype.group, rtype.resource):
            register_crd(self.registry, obj)
        return obj

    # ------------------------------------------------------------------- update

    def _merge_update(self, target: Target, current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """The object an update of ``current`` to ``new`` stores (status subresource rules)."""
        rtype = target.rtype
        if target.subresource == "status":
            merged = copy.deepcopy(current)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new_meta = meta(new)
            if new_meta.get("resourceVersion"):
                meta(merged)["resourceVersion"] = new_meta["resourceVersion"]
            return merged
        merged = copy.deepcopy(new)
        if rtype.has_status:
            if "status" in current:
                merged["status"] = copy.deepcopy(current["status"])
            else:
                merged.pop("status", None)
        merged_meta, old_meta = meta(merged), meta(current)
        for fixed in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            if fixed in old_meta:
                merged_meta[fixed] = old_meta[fixed]
            else:
                merged_meta.pop(fixed, None)
        if "managedFields" not in merged_meta and "managedFields" in old_meta:
            merged_meta["managedFields"] = old_meta["managedFields"]
        if old_meta.get("deletionTimestamp"):
            new_finalizers = [f for f in merged_meta.get("finalizers") or [] if f in (old_meta.get("finalizers") or [])]
            if new_finalizers:
                merged_meta["finalizers"] = new_finalizers
            else:
                merged_meta.pop("finalizers", None)
        return merged

    def update(self, target: Target, current: dict[str, Any], new: dict[str, Any], manager: str | None,
               dry_run: bool, operation: str = "Update", field_validation: str | None = None,
               warnings: list[str] | None = None) -> dict[str, Any]:
        """Store ``new`` over ``current`` (``resourceVersion`` as a precondition); a no-op
        update returns ``current`` unchanged."""
        rtype = target.rtype
        check_shape(new, rtype.kind, rtype.crd_name is None)
        cur_meta = meta(current)
        name = cur_meta.get("name", "")
        new_meta = meta(new)
        if new_meta.get("name") and new_meta["name"] != name:
            raise bad_request(f'the name of the object ({new_meta["name"]}) does not match the name on the URL ({name})')
        wanted_rv = new_meta.get("resourceVersion")
        if wanted_rv and str(wanted_rv) != cur_meta.get("resourceVersion"):
            raise conflict(rtype.group_resource, name, rtype.group, rtype.resource)
        merged = self._merge_update(target, current, new)
        merged["apiVersion"] = rtype.api_version(target.version)  # stored objects are version-independent
        merged["kind"] = rtype.kind
        merged_meta = meta(merged)
        merged_meta["name"] = name
        if target.namespace:
            merged_meta["namespace"] = target.namespace
        if _spec_part(merged) != _spec_part(current):
            merged_meta["generation"] = int(cur_meta.get("generation") or 1) + 1
        merged = self.admit(target, merged, current, field_validation, warnings)
        if is_crd(rtype.group, rtype.resource):
            set_crd_status(self.registry, merged)
        if operation == "Update":
            record_update_manager(merged, manager, rtype.api_version(target.version), target.subresource or "")
        if _comparable(merged) == _comparable(current):
            return current
        if dry_run:
            return merged
        key = target.key(name)
        if cur_meta.get("deletionTimestamp") and not merged_meta.get("finalizers"):
            emptied = (rtype.group, rtype.resource) != ("", "namespaces") or not self.store.list_namespace(name)
            if emptied:
                return self.deleter.remove(key, merged)
        self.committer.commit(key, merged, "MODIFIED", current)
        if is_crd(rtype.group, rtype.resource):
            register_crd(self.registry, merged)
        return merged
