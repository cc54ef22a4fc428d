"""``validate_tree`` reports the CEL rules it skipped only when the schema has rules.

The API server builds a CEL validator only for a schema with ``x-kubernetes-validations``;
without one, a blocking error (type, required, enum) is reported alone.
"""

from __future__ import annotations

from typing import Any

from infergate.api.errors import INVALID, REQUIRED, FieldError
from infergate.api.validation import blocking_error, drop_nulls, has_cel_rules, validate_tree

SPEC: dict[str, Any] = {"type": "object", "required": ["port"], "properties": {"port": {"type": "integer"}}}
RULE = {"rule": "self.port > 0", "message": "port must be positive"}


def test_no_rules_no_skipped_rules_error() -> None:
    assert validate_tree({}, SPEC, "spec") == [FieldError("spec.port", REQUIRED)]


def test_rules_skipped_after_a_blocking_error_are_reported() -> None:
    schema = {**SPEC, "x-kubernetes-validations": [RULE]}
    assert validate_tree({}, schema, "spec") == [FieldError("spec.port", REQUIRED), blocking_error()]
    assert validate_tree({"port": 0}, schema, "spec") == [
        FieldError("spec", INVALID, "object", "port must be positive")
    ]


def test_has_cel_rules_looks_everywhere_but_in_values() -> None:
    nested = {"type": "object", "properties": {"a": {"type": "array", "items": {
        "type": "object", "x-kubernetes-validations": [RULE]}}}}
    assert has_cel_rules(nested)
    assert has_cel_rules({"anyOf": [{"x-kubernetes-validations": [RULE]}]})
    assert not has_cel_rules(SPEC)
    assert not has_cel_rules({"type": "object", "default": {"x-kubernetes-validations": [RULE]}})


def test_drop_nulls_drops_only_nulls_of_fields_that_are_not_nullable() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {
        "a": {"type": "string"}, "b": {"type": "string", "nullable": True},
        "c": {"type": "array", "items": {"type": "object", "properties": {"d": {"type": "integer"}}}},
        "m": {"type": "object", "additionalProperties": {"type": "string"}}}}
    value = {"a": None, "b": None, "c": [{"d": None}], "m": {"k": None}, "free": None}
    drop_nulls(value, schema)
    assert value == {"b": None, "c": [{}], "m": {}, "free": None}
