"""The ``scale`` subresource: an autoscaling/v1 Scale over the object's replicas paths."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from infergate.apiserver.errors import APIError, invalid
from infergate.apiserver.handlers.common import (
    Target,
    decode,
    json_response,
    meta,
    method_not_allowed,
    read_body,
)
from infergate.apiserver.handlers.writes import Writer
from infergate.apiserver.jsonpath import evaluate
from infergate.apiserver.patch import PatchError, json_patch, merge_patch
from infergate.apiserver.validation import FieldCause


def scale_of(target: Target, obj: dict[str, Any]) -> dict[str, Any]:
    """The Scale of ``obj`` (its resource has scale paths)."""
    paths = target.rtype.scale
    assert paths is not None
    obj_meta = meta(obj)
    spec_values = evaluate(obj, paths.spec_replicas)
    status_values = evaluate(obj, paths.status_replicas)
    selector: Any = evaluate(obj, paths.label_selector)[:1] if paths.label_selector else []
    selector_text = ""
    if selector and isinstance(selector[0], dict):
        labels = selector[0].get("matchLabels") or {}
        selector_text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    elif selector:
        selector_text = str(selector[0])
    scale_meta = {k: obj_meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                  if k in obj_meta}
    status: dict[str, Any] = {"replicas": int(status_values[0]) if status_values else 0}
    if selector_text:
        status["selector"] = selector_text
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_meta,
            "spec": {"replicas": int(spec_values[0]) if spec_values else 1}, "status": status}


async def serve_scale(writer: Writer, request: web.Request, target: Target, dry_run: bool) -> web.Response:
    """``GET``, ``PUT`` or ``PATCH`` of the Scale; a change is written to the replicas path."""
    current = writer.committer.get(target)
    scale = scale_of(target, current)
    if request.method == "GET":
        return json_response(scale)
    content_type, raw = await read_body(request)
    body = decode(content_type, raw)
    if request.method == "PUT":
        wanted = body
    elif request.method == "PATCH" and content_type == "application/json-patch+json":
        try:
            wanted = json_patch(scale, body)
        except PatchError as exc:  # a failed test or a bad path: 422, as for the object itself
            raise APIError(422, "Invalid", str(exc)) from exc
    elif request.method == "PATCH":
        wanted = merge_patch(copy.deepcopy(scale), body)
    else:
        raise method_not_allowed(request.method)
    replicas = (wanted.get("spec") or {}).get("replicas") if isinstance(wanted, dict) else None
    if not isinstance(replicas, int) or replicas < 0:
        raise invalid("Scale", target.name or "", "autoscaling",
                      [FieldCause("spec.replicas", f"Invalid value: {replicas}: must be greater than or "
                                  "equal to 0")])
    new = copy.deepcopy(current)
    node = new
    parts = [p for p in target.rtype.scale.spec_replicas.split(".") if p] if target.rtype.scale else []
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = replicas
    wanted_rv = meta(wanted).get("resourceVersion") if isinstance(wanted, dict) else None
    meta(new).pop("resourceVersion", None)
    if wanted_rv:
        meta(new)["resourceVersion"] = wanted_rv
    updated = writer.update(target.main(), current, new, request.query.get("fieldManager"), dry_run)
    return json_response(scale_of(target, updated))
