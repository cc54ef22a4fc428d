"""Merging the statuses the translator computes into the statuses stored on objects.

The translator returns only the part of each status this controller owns. Writers call
``merge_status(current, desired, ...)`` to get the status to store:

- GatewayClass, Gateway: the whole status is ours (listener conditions matched by name).
- HTTPRoute ``status.parents``: entries with our ``controllerName`` are replaced, others kept.
- InferencePool ``status.parents`` (v1) / ``status.parent`` (v1alpha2): entries whose
  parentRef is a Gateway of another controller are kept, ours are replaced; the v1alpha2
  placeholder parent ``{kind: Status, name: default}`` is dropped while real parents exist
  and put back when none remain.

In every case a condition keeps its previous ``lastTransitionTime`` when its status did not
change. ``merge_status`` returns ``None`` when nothing changed (no write needed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from infergate.controller.conditions import merge_conditions
from infergate.controller.resources import GATEWAY_GROUP, INFERENCE_X_GROUP, ObjectRef

PLACEHOLDER_PARENT = {
    "parentRef": {"kind": "Status", "name": "default"},
    "conditions": [{"type": "Accepted", "status": "Unknown", "reason": "Pending",
                    "message": "Waiting for controller", "lastTransitionTime": "1970-01-01T00:00:00Z"}],
}


def _parent_key(entry: Mapping[str, Any], default_namespace: str) -> tuple[str, ...]:
    ref = entry.get("parentRef") or {}
    return (ref.get("group") or GATEWAY_GROUP, ref.get("kind") or "Gateway",
            ref.get("namespace") or default_namespace, str(ref.get("name") or ""),
            str(ref.get("sectionName") or ""), str(ref.get("port") or ""))


def _merge_entries(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]],
                   default_namespace: str) -> list[dict[str, Any]]:
    previous = {_parent_key(e, default_namespace): e for e in old}
    merged = []
    for entry in new:
        out = dict(entry)
        before = previous.get(_parent_key(entry, default_namespace))
        out["conditions"] = merge_conditions(before.get("conditions") if before else None,
                                             entry.get("conditions") or [])
        merged.append(out)
    return merged


def merge_status(ref: ObjectRef, current: Mapping[str, Any] | None, desired: Mapping[str, Any], *,
                 controller_name: str, foreign_gateways: frozenset[ObjectRef] = frozenset()
                 ) -> dict[str, Any] | None:
    current = dict(current or {})
    if ref.kind == "HTTPRoute":
        old = list(current.get("parents") or [])
        ours = [e for e in old if e.get("controllerName") == controller_name]
        others = [e for e in old if e.get("controllerName") != controller_name]
        result = dict(current)
        result["parents"] = others + _merge_entries(ours, desired.get("parents") or [], ref.namespace)
    elif ref.kind == "InferencePool":
        key = "parent" if ref.group == INFERENCE_X_GROUP else "parents"
        old = list(current.get(key) or [])

        def foreign(entry: Mapping[str, Any]) -> bool:
            pr = entry.get("parentRef") or {}
            if pr.get("kind") == "Status":
                return False
            gw = ObjectRef(pr.get("group") or GATEWAY_GROUP, pr.get("kind") or "Gateway",
                           pr.get("namespace") or ref.namespace, str(pr.get("name") or ""))
            return gw in foreign_gateways

        kept = [e for e in old if foreign(e)]
        ours = [e for e in old if not foreign(e)]
        parents = kept + _merge_entries(ours, desired.get(key) or [], ref.namespace)
        if not parents and key == "parent":
            parents = [dict(PLACEHOLDER_PARENT)]
        result = dict(current)
        result[key] = parents
    else:
        result = dict(desired)
        result["conditions"] = merge_conditions(current.get("conditions"), desired.get("conditions") or [])
        if "listeners" in desired:
            old_listeners = {lst.get("name"): lst for lst in current.get("listeners") or []}
            listeners = []
            for listener in desired["listeners"]:
                out = dict(listener)
                before = old_listeners.get(listener.get("name"))
                out["conditions"] = merge_conditions(before.get("conditions") if before else None,
                                                     listener.get("conditions") or [])
                listeners.append(out)
            result["listeners"] = listeners
    return None if result == current else result
