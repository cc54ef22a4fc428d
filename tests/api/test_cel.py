"""The CEL interpreter: syntax, semantics of errors, macros and functions; value printing."""

from __future__ import annotations

from typing import Any

import pytest

from infergate.api import cel, registry
from infergate.api.errors import FieldError, ValidationFailed, go_value
from infergate.api.objects import validate


@pytest.mark.parametrize(
    ("expr", "env", "expected"),
    [
        ("1 + 2 * 3", {}, 7),
        ("(1 + 2) * 3", {}, 9),
        ("7 / 2", {}, 3),
        ("-7 / 2", {}, -3),
        ("-7 % 3", {}, -1),
        ("'a' + \"b\"", {}, "ab"),
        ("[1, 2] + [3]", {}, [1, 2, 3]),
        ("1 < 2 && 2 <= 2 && 3 > 2 && 3 >= 3", {}, True),
        ("1 == 1.0", {}, True),
        ("'x' in ['x', 'y']", {}, True),
        ("'k' in {'k': 1}", {}, True),
        ("true ? 'a' : 'b'", {}, "a"),
        ("!false", {}, True),
        ("null == null", {}, True),
        ("self.a.b", {"self": {"a": {"b": 5}}}, 5),
        ("self[1]", {"self": [1, 2]}, 2),
        ("self['k']", {"self": {"k": "v"}}, "v"),
        ("has(self.a)", {"self": {"a": 1}}, True),
        ("has(self.b)", {"self": {"a": 1}}, False),
        ("self.__namespace__", {"self": {"namespace": "ns"}}, "ns"),
        ("self.a__dash__b", {"self": {"a-b": 1}}, 1),
        ("self.all(x, x > 0)", {"self": [1, 2]}, True),
        ("self.exists(x, x > 1)", {"self": [1, 2]}, True),
        ("self.exists_one(x, x > 0)", {"self": [1, 2]}, False),
        ("self.filter(x, x > 1)", {"self": [1, 2, 3]}, [2, 3]),
        ("self.map(x, x * 2)", {"self": [1, 2]}, [2, 4]),
        ("self.map(x, x > 1, x * 10)", {"self": [1, 2]}, [20]),
        ("self.all(k, k.startsWith('a'))", {"self": {"ab": 1, "ac": 2}}, True),
        ("size(self) == self.size()", {"self": "abc"}, True),
        ("'abc'.contains('b') && 'abc'.startsWith('a') && 'abc'.endsWith('c')", {}, True),
        ("'a/b/c'.split('/')", {}, ["a", "b", "c"]),
        ("'a/b/c'.split('/', 2)", {}, ["a", "b/c"]),
        ("'AbC'.lowerAscii() + 'x'.upperAscii()", {}, "abcX"),
        ("'  x '.trim()", {}, "x"),
        ("['a', 'b'].join('-')", {}, "a-b"),
        ("'abc'.matches('^a')", {}, True),
        ("'xabc'.matches('b')", {}, True),  # a search, not a full match
        (r"'*.example.com'.matches(r'''^(\*\.)?[a-z.]+$''')", {}, True),
        ('r"\\d"', {}, "\\d"),
        ("'\\u0041\\n'", {}, "A\n"),
        ("duration('1m') > duration('59s')", {}, True),
        ("duration('1h30m') == duration('90m')", {}, True),
        ("duration('0s') == duration('0')", {}, True),
        ("duration('.5s') == duration('500ms') && duration('1.s') == duration('1s')", {}, True),  # Go's grammar
        ("duration('1μs') == duration('1µs') && duration('1µs') == duration('1000ns')", {}, True),  # both mus
        ("int('42') + int(duration('1s')) / 1000000000", {}, 43),
        ("string(5) + string(true)", {}, "5true"),
        ("isIP('10.0.0.1') && isIP('fd00::1') && !isIP('10.0.0.1:80')", {}, True),
        ("isCIDR('10.0.0.0/8') && !isCIDR('10.0.0.1')", {}, True),
        ("0x10 + 2u", {}, 18),
    ],
)
def test_evaluate(expr: str, env: dict[str, Any], expected: Any) -> None:
    assert cel.evaluate(expr, **env) == expected


@pytest.mark.parametrize(
    ("expr", "env", "expected"),
    [
        # errors are absorbed by a decisive other side, in either order
        ("self.missing > 0 || true", {"self": {}}, True),
        ("true || self.missing > 0", {"self": {}}, True),
        ("false && self.missing > 0", {"self": {}}, False),
        ("self.missing > 0 && false", {"self": {}}, False),
        ("self.all(x, x.a > 0)", {"self": [{"a": 0}, {}]}, False),
        ("self.exists(x, x.a > 0)", {"self": [{}, {"a": 1}]}, True),
    ],
)
def test_error_absorption(expr: str, env: dict[str, Any], expected: Any) -> None:
    assert cel.evaluate(expr, **env) is expected


@pytest.mark.parametrize(
    ("expr", "env", "message"),
    [
        ("self.missing", {"self": {}}, "no such key: missing"),
        ("self.missing > 0 || false", {"self": {}}, "no such key: missing"),
        ("self[5]", {"self": [1]}, "index out of bounds: 5"),
        ("1 / 0", {}, "division by zero"),
        ("'a' < 1", {}, "no such overload"),
        ("unknown", {}, "undeclared reference to 'unknown'"),
        ("nosuchfn(1)", {}, "undeclared reference to 'nosuchfn'"),
        ("duration('soon')", {}, "invalid duration"),
        ("duration(' 1s')", {}, "invalid duration"),  # time.ParseDuration does not trim
        ("duration('1')", {}, "invalid duration"),  # a unit is required except for 0
    ],
)
def test_evaluation_errors(expr: str, env: dict[str, Any], message: str) -> None:
    with pytest.raises(cel.CelError) as info:
        cel.evaluate(expr, **env)
    assert message in str(info.value)


@pytest.mark.parametrize("expr", ["1 +", "(1", "self.", "has(self)", "a ? b", "'unterminated", "1 2", "@"])
def test_syntax_errors(expr: str) -> None:
    with pytest.raises(cel.CelError):
        cel.compile_rule(expr)


def test_uses_old_self() -> None:
    assert cel.compile_rule("self == oldSelf").uses("oldSelf")
    assert not cel.compile_rule("self.all(x, x == 1)").uses("oldSelf")


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (0, "0"),
        (-3, "-3"),
        (1.5, "1.5"),
        (2.0, "2"),
        (True, "true"),
        ("x", '"x"'),
        ('a"b', '"a\\"b"'),
        (None, '"null"'),
        ({"name": "a", "n": 1}, 'map[string]interface {}{"n":1, "name":"a"}'),
        (["a", 1], '[]interface {}{"a", 1}'),
    ],
)
def test_go_value(value: Any, printed: str) -> None:
    assert go_value(value) == printed


def test_field_error_strings() -> None:
    assert str(FieldError("spec.a", "Required value")) == "spec.a: Required value"
    assert str(FieldError("spec.a", "Forbidden", detail="no")) == "spec.a: Forbidden: no"
    assert str(FieldError("spec.a", "Too long", "xxxx", "may not be longer than 3")) == (
        "spec.a: Too long: may not be longer than 3"
    )
    assert str(FieldError("spec.a", "Unknown field")) == 'unknown field "spec.a"'
    assert FieldError("spec.a", "Too many", 3, "must have at most 1 items").reason == "FieldValueTooMany"


def test_validation_failed_aggregates_and_deduplicates() -> None:
    e1 = FieldError("spec.a", "Required value")
    e2 = FieldError("spec.b", "Invalid value", 1, "bad")
    one = ValidationFailed("Gateway", "gw", [e1, e1], "gateway.networking.k8s.io")
    assert str(one) == 'Gateway.gateway.networking.k8s.io "gw" is invalid: spec.a: Required value'
    two = ValidationFailed("Pod", "p", [e1, e2])
    assert str(two) == 'Pod "p" is invalid: [spec.a: Required value, spec.b: Invalid value: 1: bad]'
    assert (two.code, two.reason) == (422, "Invalid")


def test_validation_does_not_change_the_shared_schemas() -> None:
    before = {t.crd_name + t.release: t.schema() for t in registry.all_types() if not t.builtin}
    validate(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "r"},
            "spec": {"rules": [{"backendRefs": [{"name": "s", "port": 80}]}]},
        }
    )
    after = {t.crd_name + t.release: t.schema() for t in registry.all_types() if not t.builtin}
    assert before == after
