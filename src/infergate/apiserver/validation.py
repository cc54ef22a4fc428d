"""Admission-time validation: pluggable hooks keyed by (group, kind), plus structural
checks of custom resources against their CRD's ``openAPIV3Schema``.

The default hooks delegate the inference and Gateway API kinds to ``infergate.api``
(``validate``, ``validate_update``, ``apply_defaults``) when that package provides them.
Errors are :class:`FieldCause` values that the server returns as a 422 ``Status`` whose
``details.causes`` kubectl prints as ``<field>: <message>``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FieldCause:
    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


# (new object, old object or None on create, the object's CRD or None) -> errors
Validator = Callable[[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None], list[FieldCause]]
# (object, its CRD or None) -> defaulted object
Defaulter = Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]]

GIE_BUNDLE_ANNOTATION = "inference.networking.k8s.io/bundle-version"


def release_of(crd: dict[str, Any] | None) -> str | None:
    """The GIE release a CRD comes from (its bundle-version annotation), for infergate.api."""
    if crd is None:
        return None
    annotations = (crd.get("metadata") or {}).get("annotations") or {}
    release = annotations.get(GIE_BUNDLE_ANNOTATION)
    return str(release) if release else None


def _is_unknown_field(error: Any) -> bool:
    return str(getattr(error, "type", "")) == "Unknown field"

API_GROUPS = ("inference.networking.k8s.io", "inference.networking.x-k8s.io", "gateway.networking.k8s.io")


def _cause(error: Any) -> FieldCause:
    field = getattr(error, "field", None) or getattr(error, "path", None) or ""
    message = (getattr(error, "body", None) or getattr(error, "message", None) or getattr(error, "detail", None)
               or str(error))
    reason = getattr(error, "reason", None) or getattr(error, "type", None) or "FieldValueInvalid"
    if not isinstance(reason, str) or not reason.startswith("Field"):
        reason = "FieldValueInvalid"
    return FieldCause(str(field), str(message), reason)


def _api_module() -> Any:
    try:
        return importlib.import_module("infergate.api")
    except ImportError:
        return None


def _api_knows(api: Any, obj: dict[str, Any], crd: dict[str, Any] | None) -> bool:
    by_gvk = getattr(getattr(api, "registry", None), "by_gvk", None)
    if by_gvk is None:
        return True
    try:
        release = release_of(crd)
        found = by_gvk(str(obj.get("apiVersion", "")), str(obj.get("kind", "")), *([release] if release else []))
    except Exception:
        return True
    return found is not None


def api_validator(obj: dict[str, Any], old: dict[str, Any] | None, crd: dict[str, Any] | None) -> list[FieldCause]:
    """Validate with ``infergate.api`` (no-op while that package lacks ``validate``).

    Unknown fields are left to the server, which checks them against the installed CRD.
    """
    api = _api_module()
    validate = getattr(api, "validate", None)
    if validate is None:
        return []
    failed = getattr(api, "ValidationFailed", None)
    if not _api_knows(api, obj, crd):
        return []  # a kind infergate.api has no type for: the CRD schema checks are all there is
    try:
        update = getattr(api, "validate_update", None)
        kwargs = {"release": release_of(crd)} if release_of(crd) else {}
        errors = update(old, obj, **kwargs) if old is not None and update is not None else validate(obj, **kwargs)
    except Exception as exc:
        if failed is not None and isinstance(exc, failed):
            errors = getattr(exc, "errors", None) or [exc]
        else:
            log.warning("infergate.api validation of %s failed to run: %s", obj.get("kind"), exc)
            return []
    return [_cause(e) for e in errors or [] if not _is_unknown_field(e)]


def api_defaulter(obj: dict[str, Any], crd: dict[str, Any] | None) -> dict[str, Any]:
    api = _api_module()
    defaults = getattr(api, "apply_defaults", None)
    if defaults is None:
        return obj
    try:
        result = defaults(obj, **({"release": release_of(crd)} if release_of(crd) else {}))
    except Exception as exc:
        log.warning("infergate.api defaulting of %s failed: %s", obj.get("kind"), exc)
        return obj
    return result if isinstance(result, dict) else obj


class Admission:
    """Validators and defaulters per API group (``kind`` ``"*"`` matches every kind)."""

    def __init__(self, *, use_api_package: bool = True) -> None:
        self._validators: dict[tuple[str, str], list[Validator]] = {}
        self._defaulters: dict[tuple[str, str], list[Defaulter]] = {}
        if use_api_package:
            for group in API_GROUPS:
                self.add_validator(group, "*", api_validator)
                self.add_defaulter(group, "*", api_defaulter)

    def add_validator(self, group: str, kind: str, validator: Validator) -> None:
        self._validators.setdefault((group, kind), []).append(validator)

    def add_defaulter(self, group: str, kind: str, defaulter: Defaulter) -> None:
        self._defaulters.setdefault((group, kind), []).append(defaulter)

    def handles(self, group: str, kind: str, obj: dict[str, Any] | None = None,
                crd: dict[str, Any] | None = None) -> bool:
        """Whether a validator is registered for this kind (then it owns value validation).

        The ``infergate.api`` hooks own only the kinds (and versions) that package has types for.
        """
        validators = self._validators.get((group, kind), []) + self._validators.get((group, "*"), [])
        if not validators:
            return False
        if obj is not None and all(v is api_validator for v in validators):
            return _api_knows(_api_module(), obj, crd)
        return True

    def default(self, group: str, obj: dict[str, Any], crd: dict[str, Any] | None = None) -> dict[str, Any]:
        kind = str(obj.get("kind", ""))
        for defaulter in self._defaulters.get((group, kind), []) + self._defaulters.get((group, "*"), []):
            obj = defaulter(obj, crd)
        return obj

    def validate(self, group: str, obj: dict[str, Any], old: dict[str, Any] | None,
                 crd: dict[str, Any] | None = None) -> list[FieldCause]:
        kind = str(obj.get("kind", ""))
        causes: list[FieldCause] = []
        for validator in self._validators.get((group, kind), []) + self._validators.get((group, "*"), []):
            causes.extend(validator(obj, old, crd))
        return causes


# ------------------------------------------------------------- structural CRD schemas

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,),
    "number": (int, float), "boolean": (bool,),
}
_TYPE_WORDS = {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean"}


def _json_type(value: Any) -> str:
    return _TYPE_WORDS.get(type(value), type(value).__name__)


def check_schema(obj: dict[str, Any], schema: dict[str, Any]) -> tuple[list[FieldCause], list[str]]:
    """Type, required and enum errors of ``obj`` against a CRD schema, and unknown field paths.

    ``metadata``, ``apiVersion`` and ``kind`` are not checked. Unknown fields are fields
    not declared under a schema without ``x-kubernetes-preserve-unknown-fields``.
    """
    errors: list[FieldCause] = []
    unknown: list[str] = []
    properties = schema.get("properties") or {}
    for key, value in obj.items():
        if key in ("metadata", "apiVersion", "kind"):
            continue
        if key in properties:
            _check(value, properties[key], key, errors, unknown)
        elif not schema.get("x-kubernetes-preserve-unknown-fields"):
            unknown.append(key)
    for key in schema.get("required") or []:
        if key not in obj and key not in ("metadata", "apiVersion", "kind"):
            errors.append(FieldCause(key, "Required value", "FieldValueRequired"))
    return errors, unknown


def _check(value: Any, schema: dict[str, Any], path: str, errors: list[FieldCause], unknown: list[str]) -> None:
    if value is None:
        if not schema.get("nullable"):
            errors.append(FieldCause(path, f'Invalid value: "null": {path} in body must be of type '
                                           f'{schema.get("type", "object")}: "null"', "FieldValueTypeInvalid"))
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            errors.append(FieldCause(path, f'Invalid value: "{_json_type(value)}": {path} in body must be of '
                                           f'type integer or string', "FieldValueTypeInvalid"))
        return
    wanted = schema.get("type")
    if wanted in _TYPES:
        ok = isinstance(value, _TYPES[wanted]) and not (isinstance(value, bool) and wanted in ("integer", "number"))
        if wanted == "integer" and isinstance(value, float) and value.is_integer():
            ok = True
        if not ok:
            errors.append(FieldCause(path, f'Invalid value: "{_json_type(value)}": {path} in body must be of '
                                           f'type {wanted}: "{_json_type(value)}"', "FieldValueTypeInvalid"))
            return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in schema["enum"])
        shown = f'"{value}"' if isinstance(value, str) else str(value)
        errors.append(FieldCause(path, f"Unsupported value: {shown}: supported values: {allowed}",
                                 "FieldValueNotSupported"))
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            sub = f"{path}.{key}"
            if properties and key in properties:
                _check(item, properties[key], sub, errors, unknown)
            elif isinstance(additional, dict):
                _check(item, additional, sub, errors, unknown)
            elif properties is not None and not additional and not schema.get("x-kubernetes-preserve-unknown-fields"):
                unknown.append(sub)
        for key in schema.get("required") or []:
            if key not in value:
                errors.append(FieldCause(f"{path}.{key}", "Required value", "FieldValueRequired"))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{index}]", errors, unknown)


def prune(obj: dict[str, Any], paths: list[str]) -> None:
    """Remove the unknown fields ``check_schema`` reported (as the real server prunes them)."""
    import re

    for path in sorted(paths, key=len, reverse=True):
        parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
        node: Any = obj
        for part in parts[:-1]:
            if part.startswith("["):
                index = int(part[1:-1])
                node = node[index] if isinstance(node, list) and index < len(node) else None
            else:
                node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(parts[-1], None)
