"""Schema markers on the pydantic models, and the OpenAPI v3 schema generated from them.

The models in ``infergate.api`` carry the upstream kubebuilder markers as data:

- :class:`S` in ``Annotated[...]`` metadata of a field or type alias: bounds, pattern,
  format, enum, list type and keys, defaults, CEL rules (:class:`Rule`);
- :class:`S` as a model's ``__k8s__`` class attribute: rules and settings of the object
  itself (``x-kubernetes-validations`` on a struct, ``x-kubernetes-map-type``, ``oneOf``...).

:func:`schema_for` turns a model class into the structural OpenAPI v3 schema that the CRD
carries; validation (``infergate.api.validation``) walks that same schema, so the CRDs and
``infergate.api.validate`` cannot disagree.

Conventions: a field is ``required`` in the schema iff the pydantic field has no default;
a scalar pydantic default (``str``/``int``/``bool``) is the CRD default; object and list
defaults are given as JSON in ``S(default=...)``; ``Literal[...]`` becomes ``enum``.
"""

from __future__ import annotations

import copy
import types
from dataclasses import dataclass, field, fields, replace
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

__all__ = ["MISSING", "Rule", "S", "merge", "schema_for", "type_schema"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Rule:
    """One ``x-kubernetes-validations`` entry."""

    rule: str
    message: str | None = None
    message_expression: str | None = None
    reason: str | None = None
    field_path: str | None = None
    optional_old_self: bool | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.field_path is not None:
            out["fieldPath"] = self.field_path
        if self.message is not None:
            out["message"] = self.message
        if self.message_expression is not None:
            out["messageExpression"] = self.message_expression
        if self.optional_old_self is not None:
            out["optionalOldSelf"] = self.optional_old_self
        if self.reason is not None:
            out["reason"] = self.reason
        out["rule"] = self.rule
        return out


@dataclass(frozen=True)
class S:
    """Schema constraints (kubebuilder markers) for a field, a type alias or a model."""

    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    format: str | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    exclusive_minimum: bool | None = None
    exclusive_maximum: bool | None = None
    enum: tuple[Any, ...] | None = None
    min_items: int | None = None
    max_items: int | None = None
    min_properties: int | None = None
    max_properties: int | None = None
    list_type: str | None = None
    list_map_keys: tuple[str, ...] | None = None
    map_type: str | None = None
    default: Any = MISSING
    rules: tuple[Rule, ...] = ()
    preserve_unknown_fields: bool | None = None
    embedded_resource: bool | None = None
    int_or_string: bool | None = None
    nullable: bool | None = None
    # extra JSON schema keywords copied verbatim (oneOf, anyOf, not ...)
    extra: tuple[tuple[str, Any], ...] = ()
    # override the schema type ("object" for metadata, None for int-or-string)
    type: str | None = None
    # free-form (a model's description of the whole object; not emitted)
    required: tuple[str, ...] | None = None
    # name of a shared definition (for docs and error paths only)
    name: str | None = None
    description: str | None = field(default=None, compare=False)


def merge(*markers: S) -> S:
    """Combine markers, later ones winning field by field (rules accumulate)."""
    out = S()
    for m in markers:
        changes: dict[str, Any] = {}
        for f in fields(S):
            v = getattr(m, f.name)
            if f.name == "rules":
                if v:
                    changes["rules"] = out.rules + tuple(v)
                continue
            if f.name == "extra":
                if v:
                    changes["extra"] = out.extra + tuple(v)
                continue
            if v is None or v is MISSING:
                continue
            changes[f.name] = v
        out = replace(out, **changes)
    return out


def _apply(schema: dict[str, Any], m: S) -> dict[str, Any]:
    if m.type is not None:
        if m.type == "":
            schema.pop("type", None)
        else:
            schema["type"] = m.type
    for attr, key in (
        ("min_length", "minLength"),
        ("max_length", "maxLength"),
        ("pattern", "pattern"),
        ("format", "format"),
        ("minimum", "minimum"),
        ("maximum", "maximum"),
        ("exclusive_minimum", "exclusiveMinimum"),
        ("exclusive_maximum", "exclusiveMaximum"),
        ("min_items", "minItems"),
        ("max_items", "maxItems"),
        ("min_properties", "minProperties"),
        ("max_properties", "maxProperties"),
        ("list_type", "x-kubernetes-list-type"),
        ("map_type", "x-kubernetes-map-type"),
        ("preserve_unknown_fields", "x-kubernetes-preserve-unknown-fields"),
        ("embedded_resource", "x-kubernetes-embedded-resource"),
        ("int_or_string", "x-kubernetes-int-or-string"),
        ("nullable", "nullable"),
    ):
        v = getattr(m, attr)
        if v is not None:
            schema[key] = v
    if m.enum is not None:
        schema["enum"] = list(m.enum)
    if m.list_map_keys is not None:
        schema["x-kubernetes-list-map-keys"] = list(m.list_map_keys)
    if m.default is not MISSING:
        schema["default"] = copy.deepcopy(m.default)
    if m.rules:
        schema["x-kubernetes-validations"] = [r.to_json() for r in m.rules]
    for k, v in m.extra:
        schema[k] = copy.deepcopy(v)
    if m.required is not None:
        if m.required:
            schema["required"] = sorted(m.required)
        else:
            schema.pop("required", None)
    return schema


def _split_annotated(tp: Any) -> tuple[Any, list[S]]:
    markers: list[S] = []
    while get_origin(tp) is Annotated:
        args = get_args(tp)
        tp = args[0]
        markers = [a for a in args[1:] if isinstance(a, S)] + markers
    return tp, markers


def _strip_optional(tp: Any) -> Any:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def type_schema(tp: Any, markers: list[S] | None = None) -> dict[str, Any]:
    """The OpenAPI schema of a Python type annotation plus markers."""
    collected: list[S] = []
    while True:
        tp, ms = _split_annotated(tp)
        collected = ms + collected
        stripped = _strip_optional(tp)
        if stripped is tp:
            break
        tp = stripped
    collected = collected + list(markers or [])
    schema = _base_schema(tp)
    return _apply(schema, merge(*collected)) if collected else schema


def _base_schema(tp: Any) -> dict[str, Any]:
    origin = get_origin(tp)
    if origin is Literal:
        values = list(get_args(tp))
        base = "string" if all(isinstance(v, str) for v in values) else "integer"
        return {"type": base, "enum": values}
    if origin in (list, tuple) or tp in (list, tuple):
        args = get_args(tp)
        item = args[0] if args else Any
        return {"type": "array", "items": type_schema(item)}
    if origin is dict or tp is dict:
        args = get_args(tp)
        value = args[1] if len(args) == 2 else Any
        if value is Any:
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return {"type": "object", "additionalProperties": type_schema(value)}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if tp is Any:
        return {"x-kubernetes-preserve-unknown-fields": True}
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if getattr(tp, "__k8s_opaque__", False):
            return {"type": "object"}
        return schema_for(tp)
    raise TypeError(f"no OpenAPI schema for type {tp!r}")


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, exclude_none=True, mode="json")
    if isinstance(value, list):
        return [_json_default(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_default(v) for k, v in value.items()}
    return value


def field_schema(info: FieldInfo) -> dict[str, Any]:
    """The schema of one pydantic field (its annotation, metadata and scalar default)."""
    markers = [m for m in info.metadata if isinstance(m, S)]
    schema = type_schema(info.annotation, markers)
    if "default" not in schema and not info.is_required():
        d = info.get_default(call_default_factory=False)
        if isinstance(d, str | int | bool | float) and d is not None:
            schema["default"] = d
    return schema


_CACHE: dict[type[BaseModel], dict[str, Any]] = {}


def schema_for(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a model (a fresh copy each call)."""
    cached = _CACHE.get(model)
    if cached is None:
        props: dict[str, Any] = {}
        required: list[str] = []
        fixed: dict[str, dict[str, Any]] = getattr(model, "__k8s_fixed__", {})
        for name, info in model.model_fields.items():
            key = info.alias or name
            if key in fixed:
                props[key] = copy.deepcopy(fixed[key])
                continue
            props[key] = field_schema(info)
            if info.is_required():
                required.append(key)
        cached = {"type": "object"}
        if props:
            cached["properties"] = dict(sorted(props.items()))
        if required:
            cached["required"] = sorted(required)
        marker = model.__dict__.get("__k8s__")
        if isinstance(marker, S):
            cached = _apply(cached, marker)
        _CACHE[model] = cached
    return copy.deepcopy(cached)
