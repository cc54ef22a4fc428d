"""``PATCH``: JSON merge patch, JSON patch, strategic merge patch, and server-side apply
(over HTTP and in process for ``infergate up``)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from aiohttp import web

from infergate.apiserver.errors import APIError, apply_conflict, bad_request, conflict, invalid, not_found
from infergate.apiserver.handlers.common import (
    Target,
    decode_request,
    field_checks,
    meta,
    truthy,
    warnings_of,
)
from infergate.apiserver.handlers.writes import Writer
from infergate.apiserver.limits import THREAD_DECODE_BYTES, entity_too_large
from infergate.apiserver.patch import (
    ApplyConflict,
    PatchError,
    PatchTooLarge,
    json_patch,
    merge_patch,
    server_side_apply,
    strategic_merge_patch,
)
from infergate.apiserver.resources import ResourceRegistry
from infergate.apiserver.shapes import check_shape
from infergate.apiserver.validation import FieldCause

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
_PATCH_ATTEMPTS = 5  # computations of an expensive patch while the object keeps changing


def patched(content_type: str, target: Target, current: dict[str, Any], patch: Any) -> Any:
    """``current`` with a (non-apply) patch applied; 415 for a patch type the resource does not
    take, 422 for a patch that cannot be applied (a failed ``test``, a missing path)."""
    try:
        if content_type == MERGE_PATCH:
            return merge_patch(copy.deepcopy(current), patch)
        if content_type == JSON_PATCH:
            return json_patch(current, patch)
        if content_type == STRATEGIC_MERGE_PATCH:
            if target.rtype.crd_name:
                raise APIError(415, "UnsupportedMediaType",
                               "the body of the request was in an unknown format - accepted media types include: "
                               f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}")
            return strategic_merge_patch(copy.deepcopy(current), patch)
        raise APIError(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")
    except PatchTooLarge as exc:
        raise entity_too_large(str(exc)) from exc
    except PatchError as exc:
        raise APIError(422, "Invalid", str(exc)) from exc


class Patcher:
    """Applies patches and applies through the :class:`Writer`."""

    def __init__(self, writer: Writer, registry: ResourceRegistry) -> None:
        self.writer = writer
        self.store = writer.store
        self.registry = registry

    async def patch(self, request: web.Request, target: Target, dry_run: bool) -> tuple[dict[str, Any], bool]:
        """The patched object, and whether it was created (an apply of an absent object)."""
        content_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
        decoded = await decode_request(request, "application/yaml" if content_type == APPLY_PATCH else None)
        field_checks(request, decoded.duplicates)
        patch = decoded.value
        query = request.query
        manager = query.get("fieldManager")
        if content_type == APPLY_PATCH:
            return self._apply(target, patch, manager, truthy(query.get("force")), dry_run,
                               query.get("fieldValidation"), warnings_of(request))
        current, new = await self._patched(content_type, target, patch, expensive=(request.content_length or 0) >
                                           THREAD_DECODE_BYTES or (isinstance(patch, list) and len(patch) > 100))
        if not isinstance(new, dict):
            raise bad_request("the patched object is not an object")
        patched_rv = meta(patch if isinstance(patch, dict) else {}).get("resourceVersion")
        if content_type == JSON_PATCH:
            # a JSON patch that tests or sets the resourceVersion makes it a precondition
            keep_rv = meta(new).get("resourceVersion") != meta(current).get("resourceVersion") or any(
                isinstance(op, dict) and op.get("path") == "/metadata/resourceVersion" for op in patch)
        else:
            keep_rv = bool(patched_rv)
        if not keep_rv:
            meta(new).pop("resourceVersion", None)
        return self.writer.update(target, current, new, manager, dry_run,
                                  field_validation=query.get("fieldValidation"),
                                  warnings=warnings_of(request)), False

    async def _patched(self, content_type: str, target: Target, patch: Any,
                       expensive: bool) -> tuple[dict[str, Any], Any]:
        """The current object and the patched one. An expensive patch is computed off the event
        loop; it holds if the object did not change meanwhile, else it is computed again (as
        kube-apiserver retries a patch on a conflict)."""
        rtype = target.rtype
        for _ in range(_PATCH_ATTEMPTS):
            current = self.store.get(target.key())
            if current is None:
                raise not_found(rtype.group_resource, target.name or "", rtype.group, rtype.resource)
            if not expensive:
                return current, patched(content_type, target, current, patch)
            new = await asyncio.to_thread(patched, content_type, target, current, patch)
            latest = self.store.get(target.key())
            if latest is not None and meta(latest).get("resourceVersion") == meta(current).get("resourceVersion"):
                return current, new
        raise conflict(rtype.group_resource, target.name or "", rtype.group, rtype.resource)

    def _apply(self, target: Target, patch: Any, manager: str | None, force: bool, dry_run: bool,
               field_validation: str | None, warnings: list[str]) -> tuple[dict[str, Any], bool]:
        """Server-side apply (``application/apply-patch+yaml``)."""
        rtype = target.rtype
        if not manager:
            raise invalid(rtype.kind, target.name or "", rtype.group,
                          [FieldCause("fieldManager", "Required value: is required for apply patch",
                                      "FieldValueRequired")])
        if not isinstance(patch, dict):
            raise bad_request("an apply patch must be an object")
        check_shape(patch, rtype.kind, rtype.crd_name is None)  # metadata of the wrong type: a 400, before merging
        api_version = rtype.api_version(target.version)
        current = self.store.get(target.key())
        if current is None:
            if target.subresource:
                raise not_found(rtype.group_resource, target.name or "", rtype.group, rtype.resource)
            applied = server_side_apply(None, patch, manager, api_version)
            meta(applied)["name"] = target.name
            return self.writer.create(target, applied, None, dry_run, field_validation, warnings), True
        base = current
        if target.subresource == "status":
            base = copy.deepcopy(current)

        def defaulted(obj: dict[str, Any]) -> dict[str, Any]:  # owned values are compared as stored
            try:
                return self.writer.admit(target, obj, current, None)
            except APIError:
                return obj  # the update below reports it

        try:  # the status subresource keeps no managedFields of its applies, so it has no owners to check
            applied = server_side_apply(base, patch, manager, api_version,
                                        force=force or target.subresource == "status",
                                        ignored=frozenset({"status"}) if rtype.has_status else frozenset(),
                                        normalize=defaulted)
        except ApplyConflict as exc:
            raise apply_conflict(str(exc), exc.causes()) from exc
        if not meta(patch).get("resourceVersion"):
            meta(applied).pop("resourceVersion", None)
        return self.writer.update(target, current, applied, manager, dry_run, "Apply", field_validation,
                                  warnings), False

    def apply_object(self, obj: dict[str, Any], field_manager: str = "infergate") -> dict[str, Any]:
        """Server-side apply ``obj`` without HTTP (for ``infergate up`` and tests).

        Same semantics as ``PATCH application/apply-patch+yaml`` with ``force``; raises
        :class:`APIError`. Must run on the server's event loop thread.
        """
        api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        group, _, version = api_version.rpartition("/")
        rtype = self.registry.by_kind(group, kind)
        if rtype is None or version not in rtype.versions:
            raise APIError(404, "NotFound", f'no matches for kind "{kind}" in version "{api_version}"')
        obj_meta = meta(obj)
        name = str(obj_meta.get("name") or "")
        namespace = str(obj_meta.get("namespace") or "default") if rtype.namespaced else None
        target = Target(rtype, version, namespace, name, None)
        current = self.store.get(target.key())
        applied = server_side_apply(current, obj, field_manager, api_version, force=True)
        if current is None:
            return self.writer.create(target, applied, None, False)
        meta(applied).pop("resourceVersion", None)
        return self.writer.update(target, current, applied, field_manager, False, "Apply")
