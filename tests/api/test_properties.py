"""Property tests: objects generated from the schemas, and arbitrary JSON.

- validation never raises, whatever the input;
- defaulting is idempotent and what it stores validates the same way;
- every object that validates loads into its model, and ``to_dict()`` gives back exactly
  what the API server would store (the models and the schemas agree).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infergate import api
from infergate.api import registry

from .schema_walk import crd_types, type_id

_SAFE_PATTERN_SAMPLES = st.sampled_from(["a", "example.com", "x-1", "A1", "IPAddress", "10s", "a/b"])


def _string(node: dict[str, Any]) -> st.SearchStrategy[str]:
    lo = node.get("minLength", 0)
    hi = min(node.get("maxLength", 12), 12)
    if "format" in node and node["format"] == "date-time":
        return st.sampled_from(["2026-01-01T00:00:00Z", "1970-01-01T00:00:00Z"])
    if "pattern" in node:
        rx = re.compile(node["pattern"])
        generated = st.from_regex(node["pattern"], fullmatch=False).filter(lambda s: len(s) <= 40)
        return st.one_of(_SAFE_PATTERN_SAMPLES, generated).filter(
            lambda s: rx.search(s) is not None and lo <= len(s) <= max(hi, lo, node.get("maxLength", 40))
        )
    return st.text(alphabet="abcxyz-/.", min_size=lo, max_size=max(lo, hi))


def for_schema(node: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values that satisfy the node's keywords (not necessarily its CEL rules)."""
    if "enum" in node:
        return st.sampled_from(node["enum"])
    t = node.get("type")
    if t == "string":
        return _string(node)
    if t == "integer":
        return st.integers(min_value=node.get("minimum", -5), max_value=node.get("maximum", 70000))
    if t == "boolean":
        return st.booleans()
    if t == "array":
        if depth > 6:
            return st.just([])
        item = for_schema(node["items"], depth + 1)
        lo = node.get("minItems", 0)
        hi = min(node.get("maxItems", 3), 3)
        return st.lists(item, min_size=lo, max_size=max(lo, hi))
    if t == "object":
        props = node.get("properties")
        if props is None:
            addl = node.get("additionalProperties")
            if isinstance(addl, dict):
                return st.dictionaries(
                    st.sampled_from(["app", "tier", "example.com/x"]), for_schema(addl, depth + 1), max_size=2
                )
            return st.just({})
        if depth > 6:
            return st.just({})
        required = {k: for_schema(props[k], depth + 1) for k in node.get("required", [])}
        optional = {
            k: for_schema(v, depth + 1)
            for k, v in props.items()
            if k not in required and k not in ("apiVersion", "kind", "metadata")
        }
        return st.fixed_dictionaries(required, optional=optional)
    return st.none()


@functools.cache  # one strategy per type: building (and validating) it anew for each example took most of the time
def _objects(t: registry.ResourceType) -> st.SearchStrategy[dict[str, Any]]:
    schema = t.schema()
    body = for_schema(schema)
    return body.map(
        lambda b: {
            **b,
            "apiVersion": t.api_version,
            "kind": t.kind,
            "metadata": {"name": "obj", "namespace": "ns"},
        }
    )


@pytest.mark.parametrize("t", crd_types(), ids=type_id)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)
@given(data=st.data())
def test_generated_objects(t: registry.ResourceType, data: st.DataObject) -> None:
    obj = data.draw(_objects(t))
    errors = api.validate(obj, release=t.release)
    stored = api.apply_defaults(obj, release=t.release)
    assert api.apply_defaults(stored, release=t.release) == stored
    if errors:
        # still invalid after the server's own defaulting: nothing typed comes out
        with pytest.raises(api.ValidationFailed):
            api.load(obj, release=t.release)
        return
    loaded = api.load(obj, release=t.release)
    assert type(loaded) is t.model
    assert loaded.to_dict() == stored
    assert api.validate(stored, release=t.release) == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
FIELDS = st.sampled_from(["spec", "status", "selector", "targetPorts", "rules", "listeners", "name", "port"])


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from([(t.api_version, t.kind) for t in registry.all_types()]),
    body=st.dictionaries(FIELDS, JSON, max_size=3),
    spec=st.dictionaries(FIELDS, JSON, max_size=3),
)
def test_arbitrary_json_never_crashes(
    kind: tuple[str, str], body: dict[str, Any], spec: dict[str, Any]
) -> None:
    obj = {**body, "apiVersion": kind[0], "kind": kind[1], "metadata": {"name": "x"}}
    if isinstance(obj.get("spec"), dict):
        obj["spec"].update(spec)
    errors = api.validate(obj)
    assert all(isinstance(str(e), str) for e in errors)
    api.apply_defaults(obj)
    try:
        api.load(obj)
    except api.ValidationFailed as exc:
        assert exc.errors and str(exc)
