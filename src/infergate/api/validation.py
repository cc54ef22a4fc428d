"""Structural-schema pruning, defaulting and validation, as the API server does for CRs.

Everything here works on plain JSON values and a structural OpenAPI v3 schema (the one
``infergate.api.schema`` generates from the models and the CRDs carry):

1. :func:`find_unknown_fields` — what pruning would drop (strict field validation reports
   ``unknown field "spec.x"``);
2. :func:`apply_schema_defaults` — ``null`` values of non-nullable fields are dropped, then
   ``default`` values fill absent properties, top-down, including inside defaulted values;
3. :func:`validate_value` — OpenAPI value validation (type, enum, bounds, pattern, format,
   items, properties, list-type uniqueness), then the CEL rules, in the API server's words.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from datetime import datetime
from typing import Any

from infergate.api import cel, regex
from infergate.api.errors import (
    DUPLICATE,
    FORBIDDEN,
    INVALID,
    NOT_SUPPORTED,
    REQUIRED,
    TOO_LONG,
    TOO_MANY,
    FieldError,
)

__all__ = [
    "apply_schema_defaults",
    "drop_nulls",
    "find_unknown_fields",
    "json_type",
    "validate_cel",
    "validate_value",
]

Json = Any


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def json_type(v: Json) -> str:
    """The JSON type name of a value, as the API server names it in errors."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


# ---------------------------------------------------------------------------------------
# Pruning (unknown fields)


def find_unknown_fields(value: Json, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of fields that pruning would drop (sorted within each object)."""
    out: list[str] = []
    _unknown(value, schema, path, out)
    return out


def _unknown(value: Json, schema: dict[str, Any], path: str, out: list[str]) -> None:
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return
    if isinstance(value, dict) and schema.get("type", "object") == "object":
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        if schema.get("x-kubernetes-embedded-resource"):
            return
        for key in sorted(value):
            sub = value[key]
            if props is not None and key in props:
                _unknown(sub, props[key], _child(path, key), out)
            elif isinstance(addl, dict):
                _unknown(sub, addl, _child(path, key), out)
            elif addl is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                continue
            elif props is not None or addl is False:
                out.append(_child(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _unknown(item, schema["items"], _index(path, i), out)


def prune(value: Json, schema: dict[str, Any]) -> Json:
    """A copy of ``value`` without the fields that the schema does not know."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return copy.deepcopy(value)
    if isinstance(value, dict) and schema.get("type", "object") == "object":
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for key, sub in value.items():
            if props is not None and key in props:
                out[key] = prune(sub, props[key])
            elif isinstance(addl, dict):
                out[key] = prune(sub, addl)
            elif (
                addl is True
                or schema.get("x-kubernetes-preserve-unknown-fields")
                or (props is None and addl is None)
            ):
                out[key] = copy.deepcopy(sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"]) for item in value]
    return copy.deepcopy(value)


# ---------------------------------------------------------------------------------------
# Defaulting


def apply_schema_defaults(value: Json, schema: dict[str, Any]) -> Json:
    """A copy of ``value`` with nulls of non-nullable fields dropped and defaults applied."""
    value = copy.deepcopy(value)
    _default(value, schema)
    return value


def _field_schema(schema: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The schema of an object's field: its property, else ``additionalProperties``."""
    props = schema.get("properties") or {}
    if key in props:
        return props[key]  # type: ignore[no-any-return]
    addl = schema.get("additionalProperties")
    return addl if isinstance(addl, dict) else None


def _drop_null_fields(value: dict[str, Any], schema: dict[str, Any]) -> None:
    for key in list(value):
        sub_schema = _field_schema(schema, key)
        if value[key] is None and sub_schema is not None and not sub_schema.get("nullable"):
            del value[key]


def drop_nulls(value: Json, schema: dict[str, Any]) -> None:
    """Drop, in place, the ``null`` values of fields that are not ``nullable`` (the API server
    prunes them before defaulting)."""
    if isinstance(value, dict):
        _drop_null_fields(value, schema)
        for key, sub in value.items():
            sub_schema = _field_schema(schema, key)
            if sub_schema is not None:
                drop_nulls(sub, sub_schema)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            drop_nulls(item, schema["items"])


def _default(value: Json, schema: dict[str, Any]) -> None:
    if isinstance(value, dict):
        _drop_null_fields(value, schema)
        for key, sub_schema in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub_schema:
                value[key] = copy.deepcopy(sub_schema["default"])
        for key, sub in value.items():
            field_schema = _field_schema(schema, key)
            if field_schema is not None:
                _default(sub, field_schema)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default(item, schema["items"])


# ---------------------------------------------------------------------------------------
# OpenAPI value validation


def _is_integer(v: Json) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, float) and v.is_integer()


def _type_ok(v: Json, t: str) -> bool:
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "integer":
        return _is_integer(v)
    if t == "number":
        return isinstance(v, int | float) and not isinstance(v, bool)
    if t == "boolean":
        return isinstance(v, bool)
    return True


_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _format_ok(fmt: str, v: str) -> bool:
    if fmt == "date-time":
        if not _DATE_TIME.fullmatch(v):
            return False
        try:
            datetime.fromisoformat(v.replace("z", "Z").replace("Z", "+00:00").replace("t", "T"))
        except ValueError:
            return False
        return True
    if fmt == "ipv4":
        try:
            ipaddress.IPv4Address(v)
        except ValueError:
            return False
        return True
    if fmt == "ipv6":
        try:
            ipaddress.IPv6Address(v)
        except ValueError:
            return False
        return True
    if fmt == "date":
        try:
            datetime.strptime(v, "%Y-%m-%d")
        except ValueError:
            return False
        return True
    if fmt == "byte":
        return re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", v) is not None and len(v) % 4 == 0
    return True  # int32, int64 and unknown formats are not checked on strings


def _pattern_ok(pattern: str, v: str) -> bool:
    """OpenAPI ``pattern``: an RE2 search (go-openapi uses Go's ``regexp``). A pattern RE2
    cannot compile fails every value, as the API server refuses such a CRD in the first place."""
    try:
        return regex.search(pattern, v)
    except regex.RegexError:
        return False


def _num(v: Json) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _enum_text(values: list[Any]) -> str:
    out: list[str] = []
    for x in values:
        if isinstance(x, str):
            out.append(f'"{x}"')
        else:
            out.append(_num(x) if not isinstance(x, bool) else ("true" if x else "false"))
    return "supported values: " + ", ".join(out)


def validate_value(value: Json, schema: dict[str, Any], path: str = "") -> list[FieldError]:
    """OpenAPI schema validation of a (pruned, defaulted) value; errors in API-server form."""
    errs: list[FieldError] = []
    _validate(value, schema, path, errs)
    return errs


def _validate(v: Json, s: dict[str, Any], path: str, errs: list[FieldError]) -> None:
    t = s.get("type")
    if s.get("x-kubernetes-int-or-string"):
        if not (isinstance(v, str) or _is_integer(v)):
            errs.append(FieldError(path, INVALID, json_type(v), "must be of type integer or string"))
            return
    elif t is not None and not _type_ok(v, t):
        if v is None and s.get("nullable"):
            return
        errs.append(FieldError(path, INVALID, json_type(v), f"must be of type {t}"))
        return
    if "enum" in s and not any(_json_equal(v, e) for e in s["enum"]):
        errs.append(FieldError(path, NOT_SUPPORTED, v, _enum_text(s["enum"])))
    if isinstance(v, str):
        n = len(v)
        if "maxLength" in s and n > s["maxLength"]:
            errs.append(FieldError(path, TOO_LONG, v, f"may not be longer than {s['maxLength']}"))
        if "minLength" in s and n < s["minLength"]:
            errs.append(FieldError(path, INVALID, v, f"must be at least {s['minLength']} chars long"))
        if "pattern" in s and not _pattern_ok(s["pattern"], v):
            errs.append(FieldError(path, INVALID, v, f"must match '{s['pattern']}'"))
        if "format" in s and not _format_ok(s["format"], v):
            errs.append(FieldError(path, INVALID, v, f"must be of type {s['format']}"))
    elif isinstance(v, int | float) and not isinstance(v, bool):
        if "minimum" in s:
            if s.get("exclusiveMinimum"):
                if not v > s["minimum"]:
                    errs.append(FieldError(path, INVALID, v, f"must be greater than {_num(s['minimum'])}"))
            elif v < s["minimum"]:
                errs.append(
                    FieldError(path, INVALID, v, f"must be greater than or equal to {_num(s['minimum'])}")
                )
        if "maximum" in s:
            if s.get("exclusiveMaximum"):
                if not v < s["maximum"]:
                    errs.append(FieldError(path, INVALID, v, f"must be less than {_num(s['maximum'])}"))
            elif v > s["maximum"]:
                errs.append(
                    FieldError(path, INVALID, v, f"must be less than or equal to {_num(s['maximum'])}")
                )
    elif isinstance(v, list):
        if "maxItems" in s and len(v) > s["maxItems"]:
            errs.append(FieldError(path, TOO_MANY, len(v), f"must have at most {s['maxItems']} items"))
        if "minItems" in s and len(v) < s["minItems"]:
            errs.append(FieldError(path, INVALID, len(v), f"must have at least {s['minItems']} items"))
        items = s.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(v):
                _validate(item, items, _index(path, i), errs)
    elif isinstance(v, dict):
        if "maxProperties" in s and len(v) > s["maxProperties"]:
            errs.append(FieldError(path, TOO_MANY, len(v), f"must have at most {s['maxProperties']} items"))
        if "minProperties" in s and len(v) < s["minProperties"]:
            errs.append(
                FieldError(path, INVALID, len(v), f"must have at least {s['minProperties']} properties")
            )
        for req in s.get("required", []):
            if req not in v:
                errs.append(FieldError(_child(path, req), REQUIRED))
        props = s.get("properties") or {}
        addl = s.get("additionalProperties")
        for key in sorted(v):
            if key in props:
                _validate(v[key], props[key], _child(path, key), errs)
            elif isinstance(addl, dict):
                _validate(v[key], addl, _child(path, key), errs)
    for combinator in ("oneOf", "anyOf"):
        if combinator in s:
            _combinator(v, s, combinator, path, errs)
    if "not" in s and not validate_value(v, s["not"], path):
        errs.append(FieldError(path, INVALID, json_type(v), "must not validate the schema (not)"))


def _combinator(v: Json, s: dict[str, Any], kind: str, path: str, errs: list[FieldError]) -> None:
    branches: list[dict[str, Any]] = s[kind]
    results = [validate_value(v, branch, path) for branch in branches]
    passing = sum(1 for r in results if not r)
    if kind == "anyOf" and passing >= 1:
        return
    if kind == "oneOf" and passing == 1:
        return
    if kind == "oneOf":
        found = "Found none valid" if passing == 0 else f"Found {passing} valid alternatives"
        detail = f"must validate one and only one schema (oneOf). {found}"
    else:
        detail = "must validate at least one schema (anyOf)"
    errs.append(FieldError(path, INVALID, json_type(v), detail))
    if passing:
        return

    def score(i: int) -> tuple[int, int]:
        # like go-openapi: the failing branch that matched most (properties that validated) wins
        props = branches[i].get("properties") or {}
        matched = 0
        if isinstance(v, dict):
            for key in props:
                prefix = _child(path, key)
                if key in v and not any(
                    e.path == prefix or e.path.startswith(prefix + ".") for e in results[i]
                ):
                    matched += 1
        return (matched, -len(results[i]))

    best = max(range(len(results)), key=score)
    errs.extend(results[best])


def _json_equal(a: Json, b: Json) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _list_type(v: list[Any], s: dict[str, Any], path: str, errs: list[FieldError]) -> None:
    lt = s.get("x-kubernetes-list-type")
    if lt == "set":
        seen: list[Any] = []
        for i, item in enumerate(v):
            if any(_json_equal(item, x) for x in seen):
                errs.append(FieldError(_index(path, i), DUPLICATE, item))
            else:
                seen.append(item)
    elif lt == "map":
        keys = s.get("x-kubernetes-list-map-keys") or []
        item_schema = s.get("items") or {}
        props = item_schema.get("properties") or {}
        seen_keys: list[dict[str, Any]] = []
        for i, item in enumerate(v):
            if not isinstance(item, dict):
                continue
            key_map: dict[str, Any] = {}
            missing = False
            for k in keys:
                if k in item:
                    key_map[k] = item[k]
                elif "default" in props.get(k, {}):
                    key_map[k] = props[k]["default"]
                else:
                    missing = True
            if missing:
                continue  # the key's own required error is reported by the item schema
            if key_map in seen_keys:
                errs.append(FieldError(_index(path, i), DUPLICATE, key_map))
            else:
                seen_keys.append(key_map)


# ---------------------------------------------------------------------------------------
# CEL (x-kubernetes-validations)

_REASON_TYPES = {
    "FieldValueForbidden": FORBIDDEN,
    "FieldValueRequired": REQUIRED,
    "FieldValueDuplicate": DUPLICATE,
    "FieldValueInvalid": INVALID,
}

_NO_OLD = object()


def _rule_error_string(rule: dict[str, Any]) -> str:
    msg = rule.get("message")
    if msg:
        return str(msg).strip()
    return str(rule["rule"]).strip()


def _rule_message(rule: dict[str, Any]) -> str:
    msg = rule.get("message")
    if msg:
        return str(msg).strip()
    return f"failed rule: {_rule_error_string(rule)}"


def _rule_path(path: str, field_path: str | None) -> str:
    if not field_path:
        return path
    fp = field_path
    if fp.startswith("."):
        return path + fp if path else fp[1:]
    return _child(path, fp)


def validate_cel(
    value: Json, schema: dict[str, Any], path: str = "", old: Json = _NO_OLD
) -> list[FieldError]:
    """Evaluate every ``x-kubernetes-validations`` rule on the value tree.

    Rules that use ``oldSelf`` (transition rules) run only where ``old`` has a correlated
    value (object properties, map values, list-map items with equal keys).
    """
    errs: list[FieldError] = []
    _cel(value, schema, path, old, errs)
    return errs


def _schema_type_name(s: dict[str, Any], v: Json) -> str:
    t = s.get("type")
    return str(t) if t else json_type(v)


def _cel(v: Json, s: dict[str, Any], path: str, old: Json, errs: list[FieldError]) -> None:
    t = s.get("type")
    if t is not None and not _type_ok(v, t) and not s.get("x-kubernetes-int-or-string"):
        return  # a type error was reported; rules cannot run on this value
    for rule in s.get("x-kubernetes-validations", []):
        _run_rule(rule, v, s, path, old, errs)
    if isinstance(v, dict):
        props = s.get("properties") or {}
        addl = s.get("additionalProperties")
        for key in sorted(v):
            sub_schema = props.get(key)
            if sub_schema is None and isinstance(addl, dict):
                sub_schema = addl
            if sub_schema is None:
                continue
            prop_old = old.get(key, _NO_OLD) if isinstance(old, dict) else _NO_OLD
            _cel(v[key], sub_schema, _child(path, key), prop_old, errs)
    elif isinstance(v, list) and isinstance(s.get("items"), dict):
        items = s["items"]
        keys = s.get("x-kubernetes-list-map-keys") if s.get("x-kubernetes-list-type") == "map" else None
        for i, item in enumerate(v):
            sub_old: Json = _NO_OLD
            if keys and isinstance(old, list) and isinstance(item, dict):
                for o in old:
                    if isinstance(o, dict) and all(o.get(k) == item.get(k) for k in keys):
                        sub_old = o
                        break
            _cel(item, items, _index(path, i), sub_old, errs)


def _run_rule(
    rule: dict[str, Any], v: Json, s: dict[str, Any], path: str, old: Json, errs: list[FieldError]
) -> None:
    try:
        program = cel.compile_rule(rule["rule"])
    except cel.CelError as e:
        errs.append(FieldError(path, INVALID, _schema_type_name(s, v), f"compilation failed: {e}"))
        return
    env: dict[str, Any] = {"self": v}
    if program.uses("oldSelf"):
        if old is _NO_OLD:
            if not rule.get("optionalOldSelf"):
                return
            env["oldSelf"] = None
        else:
            env["oldSelf"] = old
    target = _rule_path(path, rule.get("fieldPath"))
    try:
        result = program.eval(env)
    except cel.CelError as e:
        msg = str(e)
        if msg.startswith("no such overload"):
            detail = (
                f"'{msg}': call arguments did not match a supported operator, function or macro "
                f"signature for rule: {_rule_error_string(rule)}"
            )
        else:
            detail = f"{msg} evaluating rule: {_rule_error_string(rule)}"
        errs.append(FieldError(path, INVALID, _schema_type_name(s, v), detail))
        return
    if result is True:
        return
    message = _rule_message(rule)
    if rule.get("messageExpression"):
        try:
            m = cel.evaluate(rule["messageExpression"], **env)
            if isinstance(m, str) and m.strip() and "\n" not in m:
                message = m.strip()
        except cel.CelError:
            pass
    reason = rule.get("reason")
    etype = _REASON_TYPES.get(reason or "FieldValueInvalid", INVALID)
    if etype in (FORBIDDEN, REQUIRED):
        errs.append(FieldError(target, etype, detail=message))
    else:
        errs.append(FieldError(target, etype, _schema_type_name(s, v), message))


# ---------------------------------------------------------------------------------------
# Everything together


def validate_list_types(value: Json, schema: dict[str, Any], path: str = "") -> list[FieldError]:
    """The ``x-kubernetes-list-type`` invariants: unique set items, unique list-map keys."""
    errs: list[FieldError] = []
    _lists(value, schema, path, errs)
    return errs


def _lists(v: Json, s: dict[str, Any], path: str, errs: list[FieldError]) -> None:
    t = s.get("type")
    if t is not None and not _type_ok(v, t):
        return
    if isinstance(v, list):
        _list_type(v, s, path, errs)
        if isinstance(s.get("items"), dict):
            for i, item in enumerate(v):
                _lists(item, s["items"], _index(path, i), errs)
    elif isinstance(v, dict):
        props = s.get("properties") or {}
        addl = s.get("additionalProperties")
        for key in sorted(v):
            sub = props.get(key) if key in props else addl if isinstance(addl, dict) else None
            if sub is not None:
                _lists(v[key], sub, _child(path, key), errs)


BLOCKING_DETAIL = (
    "some validation rules were not checked because the object was invalid; correct the existing errors to "
    "complete validation"
)


def is_blocking(e: FieldError) -> bool:
    """Errors after which the API server does not run the CEL rules (hasBlockingErr)."""
    if e.type in (NOT_SUPPORTED, REQUIRED, TOO_LONG, TOO_MANY):
        return True
    return e.type == INVALID and e.detail.startswith("must be of type ") and e.value in _JSON_TYPE_NAMES


_JSON_TYPE_NAMES = {"null", "boolean", "integer", "number", "string", "array", "object"}


def blocking_error() -> FieldError:
    """The error that stands for the CEL rules that were not run."""
    return FieldError("<nil>", INVALID, None, BLOCKING_DETAIL)


def validate_tree(
    value: Json,
    schema: dict[str, Any],
    path: str = "",
    old: Json = _NO_OLD,
    prior: list[FieldError] | None = None,
) -> list[FieldError]:
    """As the API server: OpenAPI validation, list-type invariants, then the CEL rules (with
    transition rules when ``old`` is given) unless an earlier error blocks them.

    ``prior`` are errors found before (metadata); they are part of the result and can block.
    """
    errs = list(prior or [])
    errs.extend(validate_value(value, schema, path))
    errs.extend(validate_list_types(value, schema, path))
    if not has_cel_rules(schema):
        return errs
    if any(is_blocking(e) for e in errs):
        errs.append(blocking_error())
    else:
        errs.extend(validate_cel(value, schema, path, old))
    return errs


def has_cel_rules(schema: Json) -> bool:
    """Whether a schema has ``x-kubernetes-validations`` anywhere (the API server builds a
    CEL validator, and reports rules skipped after blocking errors, only then)."""
    if isinstance(schema, dict):
        if schema.get("x-kubernetes-validations"):
            return True
        return any(has_cel_rules(v) for k, v in schema.items() if k not in ("enum", "default", "example"))
    if isinstance(schema, list):
        return any(has_cel_rules(v) for v in schema)
    return False


NO_OLD: Any = _NO_OLD
