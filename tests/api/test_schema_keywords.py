"""Every OpenAPI keyword of every generated schema node is enforced, in the API server's words.

The cases are enumerated from the generated schemas themselves (the ones the CRDs carry),
so a constraint added to a type is tested without editing this file: for each node and
keyword (type, minimum, maximum, minLength, maxLength, pattern, enum, format, minItems,
maxItems, maxProperties, required, list-type map/set, default) one valid and one invalid
value. The node's other keywords are left out of the schema under test so that each case
checks exactly one rule.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from infergate.api.validation import apply_schema_defaults, validate_list_types, validate_tree, validate_value

from .schema_walk import all_nodes, concrete

# Strings tried, in order, as the valid and the invalid sample of a pattern.
PATTERN_CANDIDATES = [
    "a",
    "example.com",
    "example.com/x",
    "Accepted",
    "IPAddress",
    "10s",
    "foo-bar",
    "*.example.com",
    "x-header",
    "/",
    "",
    "-bad-",
    "bad_",
    "a b",
    "!",
    "UPPER.example.com",
    "a/b/c",
]

_TYPE_SAMPLES: dict[str, Any] = {
    "string": "x",
    "integer": 1,
    "number": 1.5,
    "boolean": True,
    "object": {},
    "array": [],
}
_WRONG_TYPE: dict[str, Any] = {
    "string": 7,
    "integer": "seven",
    "number": "seven",
    "boolean": "yes",
    "object": "x",
    "array": {"a": 1},
}


def _cases() -> list[Any]:
    cases: list[Any] = []
    seen: set[tuple[str, str, str]] = set()

    def add(
        tid: str, path: str, keyword: str, schema: dict[str, Any], valid: Any, invalid: Any, expect: str
    ) -> None:
        key = (tid, path, keyword)
        if key in seen:
            return
        seen.add(key)
        cases.append(
            pytest.param(
                schema, valid, invalid, concrete(path), expect, id=f"{tid}:{path or '<root>'}:{keyword}"
            )
        )

    for tid, path, node in all_nodes():
        t = node.get("type")
        base = {"type": t} if t else {}
        if t in _TYPE_SAMPLES and path:
            add(tid, path, "type", base, _TYPE_SAMPLES[t], _WRONG_TYPE[t], f"must be of type {t}")
        if "minimum" in node:
            m = node["minimum"]
            add(
                tid,
                path,
                "minimum",
                {**base, "minimum": m},
                m,
                m - 1,
                f"must be greater than or equal to {m}",
            )
        if "maximum" in node:
            m = node["maximum"]
            add(tid, path, "maximum", {**base, "maximum": m}, m, m + 1, f"must be less than or equal to {m}")
        if "minLength" in node and node["minLength"] > 0:
            m = node["minLength"]
            add(
                tid,
                path,
                "minLength",
                {**base, "minLength": m},
                "a" * m,
                "a" * (m - 1),
                f"must be at least {m} chars long",
            )
        if "maxLength" in node:
            m = node["maxLength"]
            add(
                tid,
                path,
                "maxLength",
                {**base, "maxLength": m},
                "a" * m,
                "a" * (m + 1),
                f"Too long: may not be longer than {m}",
            )
        if "pattern" in node:
            rx = re.compile(node["pattern"])
            good = next((c for c in PATTERN_CANDIDATES if rx.search(c)), None)
            bad = next((c for c in PATTERN_CANDIDATES if not rx.search(c)), None)
            assert good is not None and bad is not None, f"no sample for pattern {node['pattern']}"
            add(
                tid,
                path,
                "pattern",
                {**base, "pattern": node["pattern"]},
                good,
                bad,
                f"must match '{node['pattern']}'",
            )
        if "enum" in node:
            values = node["enum"]
            bad_value: Any = "NotAValue" if all(isinstance(v, str) for v in values) else 999
            expect = "Unsupported value: " + (
                f'"{bad_value}"' if isinstance(bad_value, str) else str(bad_value)
            )
            for v in values:
                add(tid, path, f"enum={v}", {**base, "enum": values}, v, bad_value, expect)
        if node.get("format") == "date-time":
            add(
                tid,
                path,
                "format",
                {**base, "format": "date-time"},
                "2024-05-01T10:00:00Z",
                "yesterday",
                "must be of type date-time",
            )
        if "minItems" in node:
            m = node["minItems"]
            add(
                tid,
                path,
                "minItems",
                {"type": "array", "minItems": m},
                [{}] * m,
                [{}] * (m - 1),
                f"must have at least {m} items",
            )
        if "maxItems" in node:
            m = node["maxItems"]
            add(
                tid,
                path,
                "maxItems",
                {"type": "array", "maxItems": m},
                [{}] * m,
                [{}] * (m + 1),
                f"Too many: {m + 1}: must have at most {m} items",
            )
        if "maxProperties" in node:
            m = node["maxProperties"]
            valid = {f"k{i}": "v" for i in range(m)}
            invalid = {f"k{i}": "v" for i in range(m + 1)}
            add(
                tid,
                path,
                "maxProperties",
                {"type": "object", "maxProperties": m},
                valid,
                invalid,
                f"Too many: {m + 1}: must have at most {m} items",
            )
        for req in node.get("required", []):
            full = {k: 1 for k in node["required"]}
            partial = {k: v for k, v in full.items() if k != req}
            where = f"{concrete(path)}.{req}" if path else req
            add(
                tid,
                path,
                f"required={req}",
                {"type": "object", "required": node["required"]},
                full,
                partial,
                f"{where}: Required value",
            )
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            s = {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": keys,
                "items": {"type": "object"},
            }
            a = {k: "a" for k in keys}
            b = {k: "b" for k in keys}
            add(
                tid,
                path,
                "list-map-keys",
                s,
                [a, b],
                [a, dict(a)],
                "[1]: Duplicate value: map[string]interface {}",
            )
        if node.get("x-kubernetes-list-type") == "set":
            s = {"type": "array", "x-kubernetes-list-type": "set"}
            add(tid, path, "list-set", s, ["a", "b"], ["a", "a"], '[1]: Duplicate value: "a"')
    return cases


@pytest.mark.parametrize(("schema", "valid", "invalid", "path", "expect"), _cases())
def test_keyword(schema: dict[str, Any], valid: Any, invalid: Any, path: str, expect: str) -> None:
    assert validate_value(valid, schema, path) == []
    assert validate_list_types(valid, schema, path) == []
    found = validate_value(invalid, schema, path) + validate_list_types(invalid, schema, path)
    errors = [str(e) for e in found]
    assert any(expect in e for e in errors), errors
    assert all(e.startswith(path) for e in errors), errors


def _default_cases() -> list[Any]:
    out: list[Any] = []
    seen: set[tuple[str, str]] = set()
    for tid, path, node in all_nodes():
        for key, sub in (node.get("properties") or {}).items():
            if "default" not in sub or (tid, f"{path}.{key}") in seen:
                continue
            where = f"{path}.{key}" if path else key
            seen.add((tid, where))
            out.append(pytest.param(node, key, id=f"{tid}:{where}:default"))
    return out


@pytest.mark.parametrize(("parent", "key"), _default_cases())
def test_default(parent: dict[str, Any], key: str) -> None:
    sub = parent["properties"][key]
    schema = {"type": "object", "properties": {key: sub}}
    # absent: the default is filled in, and the default itself is valid for the field
    defaulted = apply_schema_defaults({}, schema)
    assert key in defaulted
    assert defaulted[key] == apply_schema_defaults(sub["default"], sub)
    assert validate_tree(defaulted[key], sub, key) == []
    # null is dropped and defaulted like an absent field
    assert apply_schema_defaults({key: None}, schema)[key] == defaulted[key]
    # present: an explicit value is kept, never overwritten
    sentinel = (
        {"explicit": True}
        if sub.get("type") == "object"
        else ["explicit"]
        if sub.get("type") == "array"
        else 4242
    )
    kept = apply_schema_defaults({key: copy.deepcopy(sentinel)}, schema)[key]
    if isinstance(sentinel, dict):
        assert kept["explicit"] is True  # nested defaults may be added around it
    else:
        assert kept == sentinel


def test_every_keyword_kind_is_covered() -> None:
    ids = {p.id.rsplit(":", 1)[1].split("=")[0] for p in _cases()}
    for keyword in (
        "type",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "enum",
        "format",
        "minItems",
        "maxItems",
        "maxProperties",
        "required",
        "list-map-keys",
        "list-set",
    ):
        assert keyword in ids, keyword
    assert len(_default_cases()) > 30
