"""Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge
patch (the subset kubectl and helm send for built-in kinds) and an approximation of
server-side apply that records field managers.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any


class PatchError(ValueError):
    """The patch cannot be applied (a bad operation, a failed ``test``, a bad path)."""


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

def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _container(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts:
        if isinstance(node, dict):
            if part not in node:
                raise PatchError(f"path /{'/'.join(parts)} does not exist")
            node = node[part]
        elif isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError) as exc:
                raise PatchError(f"bad list index {part!r}") from exc
        else:
            raise PatchError(f"path /{'/'.join(parts)} does not exist")
    return node


def json_patch(doc: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation {op!r}")
        kind = op["op"]
        parts = _pointer(op["path"])
        if kind in ("add", "replace", "test"):
            if "value" not in op:
                raise PatchError(f"{kind} operation needs a value")
            value = copy.deepcopy(op["value"])
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = copy.deepcopy(_container(doc, source))
            if kind == "move":
                doc = _remove(doc, source)
        elif kind != "remove":
            raise PatchError(f"unknown JSON patch operation {kind!r}")
        if kind == "test":
            if _container(doc, parts) != value:
                raise PatchError(f"test failed at {op['path']}")
            continue
        if kind == "remove":
            doc = _remove(doc, parts)
            continue
        if not parts:
            doc = value
            continue
        parent = _container(doc, parts[:-1])
        last = parts[-1]
        if isinstance(parent, dict):
            if kind == "replace" and last not in parent:
                raise PatchError(f"path {op['path']} does not exist")
            parent[last] = value
        elif isinstance(parent, list):
            if last == "-":
                parent.append(value)
                continue
            try:
                index = int(last)
            except ValueError as exc:
                raise PatchError(f"bad list index {last!r}") from exc
            if kind == "replace":
                if not 0 <= index < len(parent):
                    raise PatchError(f"path {op['path']} does not exist")
                parent[index] = value
            else:
                if not 0 <= index <= len(parent):
                    raise PatchError(f"path {op['path']} is out of range")
                parent.insert(index, value)
        else:
            raise PatchError(f"path {op['path']} does not exist")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _container(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list):
        try:
            del parent[int(last)]
        except (ValueError, IndexError) as exc:
            raise PatchError(f"path /{'/'.join(parts)} does not exist") from exc
    else:
        raise PatchError(f"path /{'/'.join(parts)} does not exist")
    return doc


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


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def server_side_apply(live: dict[str, Any] | None, config: dict[str, Any], manager: str,
                      api_version: str) -> dict[str, Any]:
    """Approximate server-side apply.

    The configuration is merged into the live object (maps merge, lists replace); fields the
    same manager applied last time but no longer sets are removed; each manager's applied
    field set is recorded in ``metadata.managedFields``. Conflicts between managers are not
    detected (``force`` is accepted and ignored).
    """
    live = copy.deepcopy(live) if live else {}
    managed = list((live.get("metadata") or {}).get("managedFields") or [])
    new_fields = field_set(config)
    previous = next((m for m in managed if m.get("manager") == manager and m.get("operation") == "Apply"),
                    None)
    if previous is not None:
        _remove_fields(live, previous.get("fieldsV1") or {}, new_fields)
        if isinstance(live.get("metadata"), dict):
            _remove_fields(live["metadata"], (previous.get("fieldsV1") or {}).get("f:metadata", {}),
                           new_fields.get("f:metadata", {}))
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
    entry = {"manager": manager, "operation": "Apply", "apiVersion": api_version, "time": now_rfc3339(),
             "fieldsType": "FieldsV1", "fieldsV1": new_fields}
    managed = [m for m in managed if not (m.get("manager") == manager and m.get("operation") == "Apply")]
    managed.append(entry)
    meta["managedFields"] = managed
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
                             "time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": {}}
    if subresource:
        entry["subresource"] = subresource
    managed.append(entry)
    meta["managedFields"] = managed
