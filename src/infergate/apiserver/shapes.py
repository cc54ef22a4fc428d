"""The JSON types kube-apiserver's decoder insists on before anything else looks at an object:
``metadata`` fields of the wrong type, or a non-object ``spec``/``status`` of a built-in
kind, are a 400 naming the field (as ``json: cannot unmarshal ...``), never a 500."""

from __future__ import annotations

from typing import Any

from infergate.apiserver.errors import bad_request

_META_STRINGS = ("name", "generateName", "namespace", "uid", "resourceVersion", "creationTimestamp",
                 "deletionTimestamp", "selfLink")
_META_MAPS = ("labels", "annotations")
_META_LISTS = ("finalizers", "ownerReferences", "managedFields")


def json_type(value: Any) -> str:
    """The JSON type of a decoded value as Go's decoder names it in its errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _refuse(kind: str, value: Any, field: str, go_type: str) -> None:
    raise bad_request(f"{kind} cannot be handled as a {kind}: json: cannot unmarshal {json_type(value)} "
                      f"into Go struct field {field} of type {go_type}")


def check_shape(obj: dict[str, Any], kind: str, builtin: bool) -> None:
    """400 when the object's metadata (any kind) or a built-in kind's spec/status has the
    wrong JSON type."""
    metadata = obj.get("metadata")
    if metadata is None:
        return check_sections(obj, kind, builtin)
    if not isinstance(metadata, dict):
        _refuse(kind, metadata, f"{kind}.metadata", "v1.ObjectMeta")
    for name in _META_STRINGS:
        value = metadata.get(name)
        if value is not None and not isinstance(value, str):
            _refuse(kind, value, f"ObjectMeta.metadata.{name}", "string")
    for name in _META_MAPS:
        value = metadata.get(name)
        if value is None:
            continue
        if not isinstance(value, dict):
            _refuse(kind, value, f"ObjectMeta.metadata.{name}", "map[string]string")
        for key, item in value.items():
            if not isinstance(item, str):
                _refuse(kind, item, f"ObjectMeta.metadata.{name}.{key}", "string")
    for name in _META_LISTS:
        value = metadata.get(name)
        if value is not None and not isinstance(value, list):
            _refuse(kind, value, f"ObjectMeta.metadata.{name}", "[]" + ("string" if name == "finalizers" else "object"))
    for item in metadata.get("finalizers") or []:
        if not isinstance(item, str):
            _refuse(kind, item, "ObjectMeta.metadata.finalizers", "string")
    for item in (metadata.get("ownerReferences") or []) + (metadata.get("managedFields") or []):
        if not isinstance(item, dict):
            _refuse(kind, item, "ObjectMeta.metadata.ownerReferences", "v1.OwnerReference")
    return check_sections(obj, kind, builtin)


def check_sections(obj: dict[str, Any], kind: str, builtin: bool) -> None:
    if not builtin:
        return
    for section in ("spec", "status"):
        value = obj.get(section)
        if value is not None and not isinstance(value, dict):
            _refuse(kind, value, f"{kind}.{section}", f"v1.{kind}{section.capitalize()}")
    for section in _STRING_MAPS.get(kind, ()):
        value = obj.get(section)
        if value is None:
            continue
        if not isinstance(value, dict):
            _refuse(kind, value, f"{kind}.{section}", "map[string]string")
        for key, item in value.items():
            if not isinstance(item, str):
                _refuse(kind, item, f"{kind}.{section}.{key}", "string")


_STRING_MAPS = {"ConfigMap": ("data", "binaryData"), "Secret": ("data", "stringData")}
