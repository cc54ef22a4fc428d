"""Admission-time validation: pluggable hooks keyed by (group, kind), plus the checks of
custom resources against their CRD's ``openAPIV3Schema``.

One validator serves both: :mod:`infergate.api.validation` (OpenAPI value validation,
list types and CEL rules, in the API server's words). The default hooks validate and default
the inference and Gateway API kinds infergate has types for with :mod:`infergate.api`; every
other custom resource (Gateway API kinds of another release, any user's CRD) is checked
against its CRD's schema by :func:`check_schema`.

Validation fails closed: errors are :class:`FieldCause` values that the server returns as a
422 ``Status``; a hook that raises is an :class:`AdmissionFailed`, which the server answers
with a 500 ``InternalError`` ``Status`` — the object is never stored.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infergate import api
from infergate.api import registry
from infergate.api import validation as openapi
from infergate.api.errors import UNKNOWN_FIELD, FieldError


@dataclass(frozen=True)
class FieldCause:
    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}

    @classmethod
    def of(cls, error: FieldError) -> FieldCause:
        """The ``StatusCause`` of an :mod:`infergate.api` field error."""
        return cls(error.path, error.body, error.reason)


class AdmissionFailed(Exception):
    """A validator or defaulter raised: an internal error, never an accepted object."""


# (new object, old object or None on create, the object's CRD or None) -> errors
Validator = Callable[[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None], list[FieldCause]]
# (object, its CRD or None) -> defaulted object
Defaulter = Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]]

GIE_BUNDLE_ANNOTATION = "inference.networking.k8s.io/bundle-version"
API_GROUPS = ("inference.networking.k8s.io", "inference.networking.x-k8s.io", "gateway.networking.k8s.io")


def release_of(crd: dict[str, Any] | None) -> str | None:
    """The GIE release a CRD comes from (its bundle-version annotation), for infergate.api."""
    if crd is None:
        return None
    annotations = (crd.get("metadata") or {}).get("annotations") or {}
    release = annotations.get(GIE_BUNDLE_ANNOTATION)
    return str(release) if release else None


def api_knows(obj: dict[str, Any], crd: dict[str, Any] | None) -> bool:
    """Whether :mod:`infergate.api` has a type for the object's ``apiVersion`` and ``kind``."""
    return registry.by_gvk(str(obj.get("apiVersion", "")), str(obj.get("kind", "")), release_of(crd)) is not None


def _api_errors(obj: dict[str, Any], old: dict[str, Any] | None, release: str | None) -> list[FieldError]:
    if old is not None:
        return api.validate_update(old, obj, release=release)
    return api.validate(obj, release=release)


def api_validator(obj: dict[str, Any], old: dict[str, Any] | None, crd: dict[str, Any] | None) -> list[FieldCause]:
    """Validate a kind :mod:`infergate.api` has a type for (others: the CRD schema checks).

    Unknown fields are the server's to report or prune (``fieldValidation``); they are
    dropped from a copy here so that the rest of the object is still validated. One that
    cannot be dropped (a key with a dot in it) is an error: nothing is left unvalidated.
    """
    if not api_knows(obj, crd):
        return []
    release = release_of(crd)
    errors = _api_errors(obj, old, release)
    unknown = [e.path for e in errors if e.type == UNKNOWN_FIELD]
    if not unknown:
        return [FieldCause.of(e) for e in errors]
    pruned = copy.deepcopy(obj)  # api.validate reports unknown fields alone: validate what pruning leaves
    prune(pruned, unknown)
    return [FieldCause.of(e) for e in _api_errors(pruned, old, release)]


def api_defaulter(obj: dict[str, Any], crd: dict[str, Any] | None) -> dict[str, Any]:
    return api.apply_defaults(obj, release=release_of(crd))


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

    def _hooks(self, table: dict[tuple[str, str], list[Any]], group: str, kind: str) -> list[Any]:
        return table.get((group, kind), []) + table.get((group, "*"), [])

    def handles(self, group: str, kind: str, obj: dict[str, Any] | None = None,
                crd: dict[str, Any] | None = None) -> bool:
        """Whether a validator is registered for this kind (then it owns value validation).

        The ``infergate.api`` hooks own only the kinds (and versions) that package has types for.
        """
        validators = self._hooks(self._validators, group, kind)
        if not validators:
            return False
        if obj is not None and all(v is api_validator for v in validators):
            return api_knows(obj, crd)
        return True

    def default(self, group: str, obj: dict[str, Any], crd: dict[str, Any] | None = None) -> dict[str, Any]:
        kind = str(obj.get("kind", ""))
        for defaulter in self._hooks(self._defaulters, group, kind):
            try:
                obj = defaulter(obj, crd)
            except Exception as exc:
                raise AdmissionFailed(f"defaulting {_described(obj)} failed: {exc!r}") from exc
        return obj

    def validate(self, group: str, obj: dict[str, Any], old: dict[str, Any] | None,
                 crd: dict[str, Any] | None = None) -> list[FieldCause]:
        kind = str(obj.get("kind", ""))
        causes: list[FieldCause] = []
        for validator in self._hooks(self._validators, group, kind):
            try:
                causes.extend(validator(obj, old, crd))
            except Exception as exc:
                raise AdmissionFailed(f"validating {_described(obj)} failed: {exc!r}") from exc
        return causes


def _described(obj: dict[str, Any]) -> str:
    name = (obj.get("metadata") or {}).get("name") or ""
    return f'{obj.get("kind", "")} "{name}"'


# ------------------------------------------------------------- custom resources' schemas

_OBJECT_FIELDS = ("metadata", "apiVersion", "kind")


def _body_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema without ``metadata``, ``apiVersion`` and ``kind`` (the server checks those)."""
    body = dict(schema)
    if isinstance(schema.get("properties"), dict):
        body["properties"] = {k: v for k, v in schema["properties"].items() if k not in _OBJECT_FIELDS}
    if schema.get("required"):
        body["required"] = [k for k in schema["required"] if k not in _OBJECT_FIELDS]
    return body


def check_schema(obj: dict[str, Any], schema: dict[str, Any],
                 old: dict[str, Any] | None = None) -> tuple[list[FieldCause], list[str]]:
    """Errors of ``obj`` against a CRD's ``openAPIV3Schema``, and the unknown field paths.

    As the API server: the value is validated after pruning and defaulting (OpenAPI value
    validation, list types, then the ``x-kubernetes-validations`` CEL rules, transition
    rules when ``old`` is given). ``metadata``, ``apiVersion`` and ``kind`` are not checked.
    Unknown fields are fields the schema does not declare (``x-kubernetes-preserve-unknown-fields``
    keeps them); the caller reports them (strict) or :func:`prune` s them. ``null`` values of
    fields that are not ``nullable`` are dropped from ``obj`` here, as the server prunes them.
    """
    body_schema = _body_schema(schema)
    openapi.drop_nulls(obj, body_schema)
    body = {k: v for k, v in obj.items() if k not in _OBJECT_FIELDS}
    unknown = openapi.find_unknown_fields(body, body_schema)
    value = openapi.apply_schema_defaults(openapi.prune(body, body_schema), body_schema)
    old_value: Any = openapi.NO_OLD
    if old is not None:
        old_body = {k: v for k, v in old.items() if k not in _OBJECT_FIELDS}
        old_value = openapi.apply_schema_defaults(openapi.prune(old_body, body_schema), body_schema)
    errors = openapi.validate_tree(value, body_schema, "", old_value)
    return [FieldCause.of(e) for e in errors], unknown


_PATH_PART = re.compile(r"[^.\[\]]+|\[\d+\]")


def prune(obj: dict[str, Any], paths: list[str]) -> None:
    """Remove the unknown fields :func:`check_schema` reported (as the real server prunes them)."""
    for path in sorted(paths, key=len, reverse=True):
        parts = _PATH_PART.findall(path)
        node: Any = obj
        for part in parts[:-1]:
            if part.startswith("["):
                index = int(part[1:-1])
                node = node[index] if isinstance(node, list) and index < len(node) else None
            else:
                node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(parts[-1], None)
