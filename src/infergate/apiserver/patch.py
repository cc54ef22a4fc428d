"""Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge
patch (the subset kubectl and helm send for built-in kinds) and an approximation of
server-side apply that records field managers and detects conflicts between Apply managers.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import jsonpatch

from infergate.apiserver.limits import MAX_JSON_PATCH_OPERATIONS, MAX_PATCH_COPY_BYTES
from infergate.util.clock import utc_now


class PatchError(ValueError):
    """The patch cannot be applied (a bad operation, a failed ``test``, a bad path)."""


class PatchTooLarge(PatchError):
    """The patch exceeds a bound: too many operations, or copies too much."""


# ------------------------------------------------------------------------- merge patch

def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -------------------------------------------------------------------------- JSON patch

_OPERATIONS = ("add", "remove", "replace", "move", "copy", "test")


def _check_operation(index: int, op: Any) -> None:
    """The shape of operation ``index`` (RFC 6902 section 4), a PatchError naming the field."""
    if not isinstance(op, dict):
        raise PatchError(f"invalid JSON patch operation {index}: not an object")
    name = op.get("op")
    if name not in _OPERATIONS:
        raise PatchError(f"invalid JSON patch operation {index}: op: Unsupported value: {name!r}: "
                         f"supported values: {', '.join(_OPERATIONS)}")
    for field in ("path", "from") if name in ("move", "copy") else ("path",):
        if field not in op:
            raise PatchError(f"invalid JSON patch operation {index} ({name}): {field}: Required value")
        if not isinstance(op[field], str):
            raise PatchError(f"invalid JSON patch operation {index} ({name}): {field}: Invalid value: "
                             f"{op[field]!r}: must be a string")
    if name in ("add", "replace", "test") and "value" not in op:
        raise PatchError(f"invalid JSON patch operation {index} ({name}): value: Required value")


def _copied_bytes(doc: Any, pointer: str) -> int:
    try:
        value = jsonpatch.JsonPointer(pointer).resolve(doc)
    except (jsonpatch.JsonPointerException, KeyError, IndexError, TypeError):
        return 0  # the operation itself reports it
    return len(json.dumps(value, separators=(",", ":")))


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 (the ``jsonpatch`` library) on a copy of ``doc``; any failure is a PatchError.

    At most :data:`MAX_JSON_PATCH_OPERATIONS` operations, and ``copy`` operations copy at
    most :data:`MAX_PATCH_COPY_BYTES` in total (:class:`PatchTooLarge`), as kube-apiserver.
    """
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    if len(operations) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchTooLarge(f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
                            f"got {len(operations)}")
    for index, op in enumerate(operations):
        _check_operation(index, op)
    copied = 0
    doc = copy.deepcopy(doc)
    try:
        for op in operations:
            if op["op"] == "copy":
                copied += _copied_bytes(doc, op["from"])
                if copied > MAX_PATCH_COPY_BYTES:
                    raise PatchTooLarge(f"Unable to copy, accumulated size increased to {copied}, "
                                        f"exceeds limit {MAX_PATCH_COPY_BYTES}")
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        return doc
    except jsonpatch.JsonPatchTestFailed as exc:
        raise PatchError(f"test failed: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise PatchError(str(exc)) from exc
    except (TypeError, ValueError, KeyError, IndexError) as exc:  # a malformed operation the library trips on
        if isinstance(exc, PatchError):
            raise
        raise PatchError(f"invalid JSON patch: {exc}") from exc


# ---------------------------------------------------------------- strategic merge patch

# field name -> merge key of its list elements, for the built-in types kubectl/helm patch.
_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",),
    "env": ("name",), "volumes": ("name",), "volumeMounts": ("mountPath",),
    "imagePullSecrets": ("name",), "ports": ("containerPort", "port"), "conditions": ("type",),
    "hostAliases": ("ip",), "envFrom": (), "tolerations": (), "args": (), "command": (),
    "finalizers": (), "ownerReferences": ("uid",),
}
_PRIMITIVE_MERGE = {"finalizers"}


def _merge_key(field_name: str, patch_items: list[Any], current_items: list[Any]) -> str | None:
    """The merge key of a list of maps: the first candidate every element (patch and live) has."""
    items = [*patch_items, *current_items]
    for key in _MERGE_KEYS.get(field_name, ()):
        if items and all(isinstance(item, dict) and key in item for item in items):
            return key
    return None


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """The strategic merge patch subset needed by kubectl client-side apply and helm."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list) and isinstance(value, list):
                result[name] = [item for item in result[name] if item not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_list(field_name: str, current: Any, patch: list[Any]) -> list[Any]:
    if not isinstance(current, list):
        current = []
    if field_name in _PRIMITIVE_MERGE:
        merged = list(current)
        merged.extend(item for item in patch if item not in merged)
        return merged
    key = _merge_key(field_name, patch, current)
    if key is None:
        return [copy.deepcopy(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    result = [copy.deepcopy(item) for item in current]
    for item in patch:
        if not isinstance(item, dict):
            continue
        if item.get("$patch") == "replace":
            return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
        index = next((i for i, cur in enumerate(result)
                      if isinstance(cur, dict) and cur.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
            continue
        if index is None:
            result.append(strategic_merge_patch({}, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


# ------------------------------------------------------------------- server-side apply

def field_set(obj: Any) -> dict[str, Any]:
    """The fields set in ``obj`` as a managedFields ``fieldsV1`` tree (lists are atomic)."""
    if not isinstance(obj, dict):
        return {}
    tree: dict[str, Any] = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata" and isinstance(value, dict):
            sub = {f"f:{k}": field_set(v) if isinstance(v, dict) else {} for k, v in value.items()
                   if k in ("labels", "annotations", "finalizers", "ownerReferences")}
            if sub:
                tree["f:metadata"] = sub
            continue
        tree[f"f:{key}"] = field_set(value) if isinstance(value, dict) and value else {}
    return tree


def _remove_fields(obj: dict[str, Any], removed: dict[str, Any], kept: dict[str, Any]) -> None:
    for fkey, sub in removed.items():
        if not fkey.startswith("f:"):
            continue
        name = fkey[2:]
        if name not in obj:
            continue
        if fkey not in kept:
            del obj[name]
        elif sub and isinstance(obj[name], dict):
            _remove_fields(obj[name], sub, kept[fkey])


def _apply_merge(target: Any, config: Any) -> Any:
    """Merge an applied configuration into the live object: maps merge, lists replace."""
    if not isinstance(config, dict) or not isinstance(target, dict):
        return copy.deepcopy(config)
    result = dict(target)
    for key, value in config.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _apply_merge(result.get(key), value)
    return result


class ApplyConflict(Exception):
    """An apply would change fields other Apply managers own (``force`` was not set)."""

    def __init__(self, conflicts: list[tuple[str, tuple[str, ...]]]) -> None:
        self.conflicts = conflicts  # sorted (manager, field names) pairs
        super().__init__(conflict_message(conflicts))

    def causes(self) -> list[dict[str, str]]:
        """``details.causes`` of the real server's 409 Status."""
        return [{"reason": "FieldManagerConflict", "message": f"conflict with {_quote(manager)}",
                 "field": field_path(path)} for manager, path in self.conflicts]


def field_path(path: tuple[str, ...]) -> str:
    """A field path as the real server prints it (``fieldpath.Path.String``): ``.spec.replicas``."""
    return "".join(f".{name}" for name in path)


def conflict_message(conflicts: list[tuple[str, tuple[str, ...]]]) -> str:
    """The real apiserver's message (``getConflictMessage`` in apimachinery's managedfields)."""
    if len(conflicts) == 1:
        manager, path = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {_quote(manager)}: {field_path(path)}"
    lines: list[str] = []
    for manager in sorted({m for m, _ in conflicts}):
        lines.append(f"conflicts with {_quote(manager)}:")
        lines.extend(f"- {field_path(path)}" for m, path in conflicts if m == manager)
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def _quote(manager: str) -> str:
    """Go's ``%q`` of a manager name (printable ASCII names, which is what field managers are)."""
    return '"' + manager.replace("\\", "\\\\").replace('"', '\\"') + '"'


_MISSING = object()


def leaf_paths(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The leaves of a ``fieldsV1`` tree (``f:`` keys only), as tuples of field names."""
    paths: list[tuple[str, ...]] = []
    for fkey, sub in tree.items():
        if not fkey.startswith("f:"):
            continue
        path = (*prefix, fkey[2:])
        if isinstance(sub, dict) and sub:
            paths.extend(leaf_paths(sub, path))
        else:
            paths.append(path)
    return paths


def _value_at(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        if not isinstance(obj, dict) or name not in obj:
            return _MISSING
        obj = obj[name]
    return obj


def _union(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(a)
    for key, sub in b.items():
        if key in result and isinstance(result[key], dict) and isinstance(sub, dict):
            result[key] = _union(result[key], sub)
        elif key not in result:
            result[key] = copy.deepcopy(sub)
    return result


def _without(tree: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """``tree`` without the leaf ``path``; maps left empty by the removal are removed too."""
    result = copy.deepcopy(tree)
    nodes = [result]
    for name in path[:-1]:
        child = nodes[-1].get(f"f:{name}")
        if not isinstance(child, dict):
            return result
        nodes.append(child)
    nodes[-1].pop(f"f:{path[-1]}", None)
    for depth in range(len(path) - 1, 0, -1):
        if not nodes[depth]:
            nodes[depth - 1].pop(f"f:{path[depth - 1]}", None)
    return result


def apply_conflicts(live: dict[str, Any], merged: dict[str, Any], others: list[dict[str, Any]],
                    ignored: frozenset[str] = frozenset()) -> list[tuple[str, tuple[str, ...]]]:
    """Fields of the other Apply managers' entries whose value differs between ``live`` and
    ``merged`` (the object the apply would store), as sorted ``(manager, field names)`` pairs.

    Top-level fields in ``ignored`` (e.g. ``status``, which the main resource resets) and
    ``metadata.finalizers`` (merged as a set, so never overwritten) are not compared. An owned
    map leaf conflicts only when it stops being a map, as in structured-merge-diff's compare.
    """
    found: set[tuple[str, tuple[str, ...]]] = set()
    for entry in others:
        for path in leaf_paths(entry.get("fieldsV1") or {}):
            if path[0] in ignored or path == ("metadata", "finalizers"):
                continue
            before, after = _value_at(live, path), _value_at(merged, path)
            if isinstance(before, dict) and isinstance(after, dict):
                continue  # an owned (empty) map whose entries change is not itself changed
            if before != after:
                found.add((str(entry.get("manager", "")), path))
    return sorted(found)


def server_side_apply(live: dict[str, Any] | None, config: dict[str, Any], manager: str,
                      api_version: str, *, force: bool = False, ignored: frozenset[str] = frozenset(),
                      normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Approximate server-side apply.

    The configuration is merged into the live object (maps merge, lists replace); fields the
    same manager applied last time but no longer sets are removed unless another Apply manager
    also owns them; each manager's applied field set is recorded in ``metadata.managedFields``.

    A field another ``Apply`` manager owns whose value the apply would change is a conflict:
    :class:`ApplyConflict` is raised unless ``force``, which moves those fields to ``manager``
    (an entry left with no field is dropped). Setting a field to the value it already has
    shares its ownership. ``Update`` entries carry no field set and never conflict.
    ``normalize`` (given a copy) returns the object as the server would store it (defaults
    filled in), so that a value the server defaults the same way again is not a change.
    """
    original = copy.deepcopy(live) if live else {}
    live = copy.deepcopy(original)
    managed = list((live.get("metadata") or {}).get("managedFields") or [])
    new_fields = field_set(config)
    previous = next((m for m in managed if m.get("manager") == manager and m.get("operation") == "Apply"),
                    None)
    others = [m for m in managed if m.get("operation") == "Apply" and m.get("manager") != manager]
    if previous is not None:
        kept = new_fields
        for other in others:
            kept = _union(kept, other.get("fieldsV1") or {})
        _remove_fields(live, previous.get("fieldsV1") or {}, kept)
        if isinstance(live.get("metadata"), dict):
            _remove_fields(live["metadata"], (previous.get("fieldsV1") or {}).get("f:metadata", {}),
                           kept.get("f:metadata", {}))
    cfg_meta = config.get("metadata") or {}
    merged = _apply_merge(live, {k: v for k, v in config.items() if k != "metadata"})
    meta = merged.setdefault("metadata", {})
    for key in ("labels", "annotations"):
        if cfg_meta.get(key):
            meta[key] = {**(meta.get(key) or {}), **cfg_meta[key]}
    if cfg_meta.get("finalizers"):
        meta["finalizers"] = list(dict.fromkeys([*(meta.get("finalizers") or []), *cfg_meta["finalizers"]]))
    if cfg_meta.get("ownerReferences"):
        meta["ownerReferences"] = copy.deepcopy(cfg_meta["ownerReferences"])
    for key in ("name", "namespace", "generateName"):
        if key in cfg_meta and key not in meta:
            meta[key] = cfg_meta[key]
    candidate = normalize(copy.deepcopy(merged)) if normalize is not None else merged
    conflicts = apply_conflicts(original, candidate, others, ignored)
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    taken: dict[str, list[tuple[str, ...]]] = {}
    for other_manager, path in conflicts:
        taken.setdefault(other_manager, []).append(path)
    entry = {"manager": manager, "operation": "Apply", "apiVersion": api_version, "time": utc_now(),
             "fieldsType": "FieldsV1", "fieldsV1": new_fields}
    result_managed: list[dict[str, Any]] = []
    for m in managed:
        if m.get("manager") == manager and m.get("operation") == "Apply":
            continue
        if m.get("operation") == "Apply" and m.get("manager") in taken:
            fields = m.get("fieldsV1") or {}
            for path in taken[str(m.get("manager"))]:
                fields = _without(fields, path)
            if not fields:
                continue
            m = {**m, "fieldsV1": fields}
        result_managed.append(m)
    result_managed.append(entry)
    meta["managedFields"] = result_managed
    result: dict[str, Any] = merged
    return result


def record_update_manager(obj: dict[str, Any], manager: str | None, api_version: str,
                          subresource: str = "") -> None:
    """Record that ``manager`` updated ``obj`` (operation Update; the field set is not tracked)."""
    if not manager:
        return
    meta = obj.setdefault("metadata", {})
    managed = [m for m in meta.get("managedFields") or []
               if not (m.get("manager") == manager and m.get("operation") == "Update"
                       and m.get("subresource", "") == subresource)]
    entry: dict[str, Any] = {"manager": manager, "operation": "Update", "apiVersion": api_version,
                             "time": utc_now(), "fieldsType": "FieldsV1", "fieldsV1": {}}
    if subresource:
        entry["subresource"] = subresource
    managed.append(entry)
    meta["managedFields"] = managed
