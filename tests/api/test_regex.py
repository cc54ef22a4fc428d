"""Regular expressions are RE2's, as the Kubernetes API server (Go ``regexp``) and Envoy use them.

Python's ``re`` lets ``$`` match before a trailing newline and accepts lookarounds,
backreferences, ``\\Z``, atomic groups and conditionals that RE2 refuses; it refuses RE2's
``\\pL`` classes. Each case here differs between the two.
"""

from __future__ import annotations

from typing import Any

import pytest

from infergate.api import cel, regex
from infergate.api.errors import INVALID, FieldError
from infergate.api.objects import validate_object_meta
from infergate.api.validation import validate_value
from infergate.controller.translator.rules import check_regex

HOST = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
RE2_REFUSES = [
    "(?=x)",  # lookahead
    "(?!x)",
    "(?<=a)b",  # lookbehind
    "(a)\\1",  # backreference
    "(?P<n>a)(?P=n)",  # named backreference
    "a\\Z",  # Python's end of text; RE2 spells it \z
    "(?>a)",  # atomic group
    "(a)?(?(1)b|c)",  # conditional
    "a++",  # possessive
]


def test_dollar_does_not_match_before_a_trailing_newline() -> None:
    assert regex.search(HOST, "example.com")
    assert not regex.search(HOST, "example.com\n")


@pytest.mark.parametrize("pattern", RE2_REFUSES)
def test_patterns_re2_refuses_are_refused(pattern: str) -> None:
    with pytest.raises(regex.RegexError):
        regex.check(pattern)


def test_re2_syntax_python_lacks_is_accepted() -> None:
    assert regex.search("^\\pL+$", "straße")
    assert not regex.search("^\\pL+$", "a1")
    assert regex.search("^[[:alpha:]]+$", "abc")


def test_cel_matches_is_re2() -> None:
    assert cel.evaluate(f"self.matches(r'{HOST}')", self="example.com") is True
    assert cel.evaluate(f"self.matches(r'{HOST}')", self="example.com\n") is False
    assert cel.evaluate("'abc'.matches('b')", self=None) is True  # a search, not a full match
    with pytest.raises(cel.CelError, match="invalid regex"):
        cel.evaluate("self.matches('(?=a)')", self="a")


def test_openapi_pattern_is_re2() -> None:
    schema: dict[str, Any] = {"type": "string", "pattern": HOST}
    assert validate_value("example.com", schema) == []
    assert validate_value("example.com\n", schema) == [
        FieldError("", INVALID, "example.com\n", f"must match '{HOST}'")
    ]
    assert validate_value("straße", {"type": "string", "pattern": "^\\pL+$"}) == []


def test_openapi_pattern_re2_cannot_compile_fails_the_value() -> None:
    errors = validate_value("ab", {"type": "string", "pattern": "a(?=b)"})
    assert [e.detail for e in errors] == ["must match 'a(?=b)'"]


def test_date_time_format_refuses_a_trailing_newline() -> None:
    schema = {"type": "string", "format": "date-time"}
    assert validate_value("2024-01-02T03:04:05Z", schema) == []
    assert validate_value("2024-01-02T03:04:05Z\n", schema) != []


@pytest.mark.parametrize("pattern", RE2_REFUSES)
def test_route_regexes_envoy_would_refuse_are_rejected(pattern: str) -> None:
    with pytest.raises(ValueError, match="not a valid RE2 regular expression"):
        check_regex(pattern, "spec.rules[0].matches[0].path.value")


def test_route_regexes_in_re2_syntax_are_accepted() -> None:
    check_regex("^/v1/\\pL+$", "spec.rules[0].matches[0].path.value")
    check_regex("/models/[^/]+/chat", "spec.rules[0].matches[0].path.value")


def test_metadata_names_with_a_trailing_newline_are_invalid() -> None:
    meta = {"name": "pool\n", "namespace": "ns\n", "labels": {"app\n": "vllm\n"}}
    errors = validate_object_meta(meta, namespaced=True)
    assert [(e.path, e.value) for e in errors] == [
        ("metadata.name", "pool\n"), ("metadata.namespace", "ns\n"),
        ("metadata.labels", "app\n"), ("metadata.labels", "vllm\n"),
    ]
    assert validate_object_meta({"name": "pool", "namespace": "ns", "labels": {"app": "vllm"}}, True) == []
