"""The entry points: validate, default and load whole objects as the API server would."""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import ValidationError

from infergate.api import regex, registry
from infergate.api.core import ObjectMeta, Resource
from infergate.api.errors import (
    INVALID,
    REQUIRED,
    TOO_LONG,
    UNKNOWN_FIELD,
    FieldError,
    ValidationFailed,
)
from infergate.api.validation import (
    NO_OLD,
    apply_schema_defaults,
    blocking_error,
    find_unknown_fields,
    is_blocking,
    json_type,
    prune,
    validate_cel,
    validate_tree,
)

__all__ = ["apply_defaults", "load", "resource_type_of", "validate", "validate_update"]

_DNS1123_LABEL = regex.compile_re2(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = regex.compile_re2(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = regex.compile_re2(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = regex.compile_re2(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
NAME_PART_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)

_META_FIELDS = {info.alias or name for name, info in ObjectMeta.model_fields.items()}
_TOTAL_ANNOTATION_SIZE = 256 * 1024


def _qualified_name_errors(path: str, key: str) -> list[FieldError]:
    """``validation.IsQualifiedName`` (label and annotation keys)."""
    errs: list[FieldError] = []
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append(FieldError(path, INVALID, key, "prefix part must be non-empty"))
        elif len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix):
            errs.append(FieldError(path, INVALID, key, "prefix part " + SUBDOMAIN_MSG))
    else:
        return [
            FieldError(
                path,
                INVALID,
                key,
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
                "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain "
                "prefix and '/' (e.g. 'example.com/MyName')",
            )
        ]
    if not name:
        errs.append(FieldError(path, INVALID, key, "name part must be non-empty"))
    else:
        if len(name) > 63:
            errs.append(FieldError(path, INVALID, key, "name part must be no more than 63 characters"))
        if not _QUALIFIED_NAME.match(name):
            errs.append(FieldError(path, INVALID, key, NAME_PART_MSG))
    return errs


def validate_object_meta(meta: Any, namespaced: bool) -> list[FieldError]:
    """``ValidateObjectMeta`` for a create: name, namespace, labels, annotations."""
    if meta is None:
        return [FieldError("metadata.name", REQUIRED, detail="name or generateName is required")]
    if not isinstance(meta, dict):
        return [FieldError("metadata", INVALID, json_type(meta), "must be of type object")]
    errs: list[FieldError] = []
    for key in ("name", "generateName", "namespace", "uid", "resourceVersion", "creationTimestamp"):
        if key in meta and meta[key] is not None and not isinstance(meta[key], str):
            errs.append(
                FieldError(f"metadata.{key}", INVALID, json_type(meta[key]), "must be of type string")
            )
    if errs:
        return errs
    name = meta.get("name")
    if not name and not meta.get("generateName"):
        errs.append(FieldError("metadata.name", REQUIRED, detail="name or generateName is required"))
    elif name:
        if len(name) > 253:
            errs.append(FieldError("metadata.name", INVALID, name, "must be no more than 253 characters"))
        if not _DNS1123_SUBDOMAIN.match(name):
            errs.append(FieldError("metadata.name", INVALID, name, SUBDOMAIN_MSG))
    ns = meta.get("namespace")
    if ns and namespaced:
        if len(ns) > 63:
            errs.append(FieldError("metadata.namespace", INVALID, ns, "must be no more than 63 characters"))
        if not _DNS1123_LABEL.match(ns):
            errs.append(FieldError("metadata.namespace", INVALID, ns, LABEL_MSG))
    for which in ("labels", "annotations"):
        m = meta.get(which)
        if m is None:
            continue
        path = f"metadata.{which}"
        if not isinstance(m, dict):
            errs.append(FieldError(path, INVALID, json_type(m), "must be of type object"))
            continue
        total = 0
        for k, v in m.items():
            errs.extend(_qualified_name_errors(path, k))
            if not isinstance(v, str):
                errs.append(FieldError(f"{path}.{k}", INVALID, json_type(v), "must be of type string"))
                continue
            total += len(k) + len(v)
            if which == "labels":
                if len(v) > 63:
                    errs.append(FieldError(path, INVALID, v, "must be no more than 63 characters"))
                if not _LABEL_VALUE.match(v):
                    errs.append(FieldError(path, INVALID, v, LABEL_VALUE_MSG))
        if which == "annotations" and total > _TOTAL_ANNOTATION_SIZE:
            errs.append(
                FieldError(path, TOO_LONG, detail=f"may not be more than {_TOTAL_ANNOTATION_SIZE} bytes")
            )
    return errs


def resource_type_of(obj: Any, release: str | None = None) -> registry.ResourceType | None:
    """The registered type of a JSON object (by ``apiVersion`` and ``kind``), or None."""
    if not isinstance(obj, dict):
        return None
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    return registry.by_gvk(api_version, kind, release)


def _type_errors(obj: Any) -> list[FieldError]:
    if not isinstance(obj, dict):
        return [FieldError("", INVALID, json_type(obj), "object must be of type object")]
    errs: list[FieldError] = []
    if not obj.get("apiVersion"):
        errs.append(FieldError("apiVersion", REQUIRED))
    if not obj.get("kind"):
        errs.append(FieldError("kind", REQUIRED))
    if not errs:
        errs.append(
            FieldError(
                "kind",
                INVALID,
                obj["kind"],
                f'no matches for kind "{obj["kind"]}" in version "{obj["apiVersion"]}"',
            )
        )
    return errs


def _unknown_fields(obj: dict[str, Any], rtype: registry.ResourceType) -> list[FieldError]:
    paths = find_unknown_fields(obj, rtype.shared_schema()) if not rtype.builtin else []
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        paths.extend(f"metadata.{k}" for k in sorted(meta) if k not in _META_FIELDS)
    return [FieldError(p, UNKNOWN_FIELD) for p in paths]


def _pydantic_errors(exc: ValidationError) -> list[FieldError]:
    errs: list[FieldError] = []
    for e in exc.errors():
        parts: list[str] = []
        for loc in e["loc"]:
            if isinstance(loc, int):
                parts.append(f"[{loc}]")
            else:
                parts.append(("." if parts else "") + str(loc))
        path = "".join(parts)
        if e["type"] == "missing":
            errs.append(FieldError(path, REQUIRED))
        elif e["type"] == "extra_forbidden":
            errs.append(FieldError(path, UNKNOWN_FIELD))
        else:
            errs.append(FieldError(path, INVALID, e.get("input"), e["msg"]))
    return errs


def _candidates(obj: Any, release: str | None) -> list[registry.ResourceType]:
    if not isinstance(obj, dict):
        return []
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return []
    first = registry.by_gvk(api_version, kind, release)
    if first is None:
        return []
    if release is not None:
        return [first]
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    others = [
        t for t in registry.by_kind(kind) if t.group == group and t.version == first.version and t != first
    ]
    return [first, *others]


def _validate(
    obj: Any, old: Any, release: str | None
) -> tuple[list[FieldError], registry.ResourceType | None]:
    """Validate against the release's type; without a release, a GVK that two releases
    define (the x-k8s.io InferencePool) is valid if either accepts it (the preview first)."""
    candidates = _candidates(obj, release)
    if not candidates:
        return _type_errors(obj), None
    first: tuple[list[FieldError], registry.ResourceType] | None = None
    for rtype in candidates:
        errs = _validate_as(obj, old, rtype)
        if not errs:
            return errs, rtype
        if first is None:
            first = (errs, rtype)
    assert first is not None
    return first


def _validate_as(obj: Any, old: Any, rtype: registry.ResourceType) -> list[FieldError]:
    assert isinstance(obj, dict)
    unknown = _unknown_fields(obj, rtype)
    if unknown:
        return unknown
    errs = validate_object_meta(obj.get("metadata"), rtype.namespaced)
    if rtype.builtin:
        try:
            rtype.model.model_validate(obj)
        except ValidationError as exc:
            errs.extend(_pydantic_errors(exc))
        return errs
    schema = rtype.shared_schema()
    new = apply_schema_defaults(obj, schema)
    old_defaulted = apply_schema_defaults(old, schema) if old is not None else NO_OLD
    return validate_tree(new, schema, "", old_defaulted, prior=errs)


def validate(obj: dict[str, Any], *, release: str | None = None) -> list[FieldError]:
    """Validate an object for create; ``[]`` when valid.

    As the API server does with strict field validation: unknown fields are reported alone
    (``unknown field "spec.x"``); otherwise metadata, the OpenAPI schema (after defaulting)
    and the CEL rules are checked.
    """
    return _validate(obj, None, release)[0]


_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_MISSING = object()


def lookup(obj: Any, path: str) -> Any:
    """The value at a field path (``spec.rules[0].matches``), or a sentinel when absent.

    Map keys that contain dots (``app.kubernetes.io/name``) are matched greedily.
    """
    tokens: list[str | int] = []
    for m in _PATH_TOKEN.finditer(path):
        tokens.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
    cur = obj
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if isinstance(tok, int):
            if not isinstance(cur, list) or tok >= len(cur):
                return _MISSING
            cur = cur[tok]
            i += 1
            continue
        if not isinstance(cur, dict):
            return _MISSING
        for j in range(len(tokens), i, -1):
            parts = tokens[i:j]
            if all(isinstance(p, str) for p in parts):
                key = ".".join(str(p) for p in parts)
                if key in cur:
                    cur = cur[key]
                    i = j
                    break
        else:
            return _MISSING
    return cur


def _unchanged(old: Any, new: Any, path: str) -> bool:
    if not path or path == "<nil>":
        return False
    return bool(lookup(old, path) == lookup(new, path))


def _ratchet(errs: list[FieldError], old: Any, new: Any) -> list[FieldError]:
    """CRD validation ratcheting: errors on values an update left unchanged are dropped."""
    return [e for e in errs if not _unchanged(old, new, e.path)]


def validate_update(
    old: dict[str, Any], new: dict[str, Any], *, release: str | None = None
) -> list[FieldError]:
    """Validate ``new`` as an update of ``old``: transition rules and immutable metadata too.

    As the API server with CRD validation ratcheting, an error on a value that the update
    did not change is not reported (an object that became invalid under a newer schema can
    still be updated elsewhere).
    """
    errs, rtype = _validate(new, old, release)
    if rtype is None or any(e.type == UNKNOWN_FIELD for e in errs):
        return errs
    if not rtype.builtin:
        schema = rtype.shared_schema()
        new_d = apply_schema_defaults(new, schema)
        old_d = apply_schema_defaults(old, schema)
        errs = _ratchet(errs, old_d, new_d)
        if errs and errs[-1] == blocking_error() and not any(is_blocking(e) for e in errs[:-1]):
            errs = errs[:-1] + _ratchet(validate_cel(new_d, schema, "", old_d), old_d, new_d)
    old_meta = old.get("metadata") if isinstance(old, dict) else None
    new_meta = new.get("metadata")
    if isinstance(old_meta, dict) and isinstance(new_meta, dict):
        for key in ("name", "namespace"):
            if old_meta.get(key) and new_meta.get(key) and old_meta.get(key) != new_meta.get(key):
                errs.insert(0, FieldError(f"metadata.{key}", INVALID, new_meta[key], "field is immutable"))
    return errs


def _fail(obj: Any, rtype: registry.ResourceType | None, errs: list[FieldError]) -> ValidationFailed:
    name = ""
    kind = ""
    group = ""
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("name"), str):
            name = meta["name"]
        kind = str(obj.get("kind") or "")
        api_version = str(obj.get("apiVersion") or "")
        group = api_version.split("/", 1)[0] if "/" in api_version else ""
    if rtype is not None:
        kind, group = rtype.kind, rtype.group
    return ValidationFailed(kind=kind, name=name, errors=errs, group=group)


def _defaults_as(obj: dict[str, Any], rtype: registry.ResourceType | None) -> dict[str, Any]:
    if rtype is None or rtype.builtin:
        return copy.deepcopy(obj)
    schema = rtype.shared_schema()
    return apply_schema_defaults(prune(obj, schema), schema)  # type: ignore[no-any-return]


def apply_defaults(obj: dict[str, Any], *, release: str | None = None) -> dict[str, Any]:
    """What the API server stores: unknown fields pruned, CRD defaults filled, as plain JSON.

    Without a release, a GVK that two releases define is defaulted by the type that accepts
    the object (the preview one when both do).
    """
    candidates = _candidates(obj, release)
    if len(candidates) > 1:
        _, chosen = _validate(obj, None, release)
        return _defaults_as(obj, chosen)
    return _defaults_as(obj, candidates[0] if candidates else None)


def load(obj: dict[str, Any], *, release: str | None = None) -> Resource:
    """Validate, apply defaults and return the typed resource; raises :class:`ValidationFailed`."""
    errs, rtype = _validate(obj, None, release)
    if errs or rtype is None:
        raise _fail(obj, rtype, errs)
    data = _defaults_as(obj, rtype) if not rtype.builtin else obj
    try:
        return rtype.model.model_validate(data)
    except ValidationError as exc:  # pragma: no cover - the schema check should have caught it
        raise _fail(obj, rtype, _pydantic_errors(exc)) from exc


def load_update(old: dict[str, Any], new: dict[str, Any], *, release: str | None = None) -> Resource:
    """Like :func:`load` for an update (transition rules checked against ``old``)."""
    errs = validate_update(old, new, release=release)
    if errs:
        raise _fail(new, resource_type_of(new, release), errs)
    return load(new, release=release)


__all__ += ["load_update", "validate_object_meta"]
