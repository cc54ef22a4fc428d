"""The hand-written CEL interpreter against Google's CEL runtime (cel-cpp, PyPI ``cel-expr-python``).

Every rule of every generated schema is evaluated on the valid and the invalid sample of
``test_cel_rules.SAMPLES`` (after defaulting, as the API server does) by both; they must
agree on the value, or both fail. The same for the transition rules and for expressions
that exercise the rest of the interpreter (RE2 ``matches``, error absorption, macros...).
"""

from __future__ import annotations

from typing import Any

import pytest

from infergate.api import cel
from infergate.api.validation import apply_schema_defaults

from . import google_cel
from .test_cel_rules import SAMPLES, TRANSITION_RULES, TRANSITIONS, _occurrences, _params


def _hand(source: str, env: dict[str, Any]) -> google_cel.Outcome:
    try:
        return google_cel.Outcome(value=cel.compile_rule(source).eval(env))
    except cel.CelError as exc:
        return google_cel.Outcome(error=str(exc))


def _agree(source: str, env: dict[str, Any], schema: dict[str, Any] | None = None) -> google_cel.Outcome:
    """Both engines' outcome, asserted equal (values equal, or both errors)."""
    hand = _hand(source, env)
    google = google_cel.evaluate(source, {k: google_cel.to_cel(v, schema or {}) for k, v in env.items()})
    assert (hand.error is None) == (google.error is None), (hand, google)
    assert hand.value == google.value, (hand, google)
    return hand


@pytest.mark.parametrize(("node", "rule", "path"), _params())
def test_rule_samples_agree(node: dict[str, Any], rule: dict[str, Any], path: str) -> None:
    valid, invalid = SAMPLES[rule["message"]]
    assert _agree(rule["rule"], {"self": apply_schema_defaults(valid, node)}, node).value is True
    assert _agree(rule["rule"], {"self": apply_schema_defaults(invalid, node)}, node).value is not True


@pytest.mark.parametrize(("tid", "path", "old", "new"), TRANSITIONS)
def test_transition_rules_agree(tid: str, path: str, old: str, new: str) -> None:
    (rule,) = [r for t, p, _, r in _occurrences() if t == tid and p == path and r["message"] in TRANSITION_RULES]
    assert _agree(rule["rule"], {"self": old, "oldSelf": old}).value is True
    assert _agree(rule["rule"], {"self": new, "oldSelf": old}).value is False


HOST = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
EXPRESSIONS: list[tuple[str, Any]] = [
    (f"self.matches(r'{HOST}')", "example.com"),
    (f"self.matches(r'{HOST}')", "example.com\n"),  # RE2: '$' is the end of the text
    ("self.matches('b')", "abc"),  # a search, not a full match
    ("self.matches('^\\\\pL+$')", "straße"),
    ("self.matches('(?=a)')", "a"),  # RE2 has no lookahead: an error in both
    ("self.startsWith('/') && self.endsWith('/') && self.contains('//')", "/a//b/"),
    ("self.split('/').size() == 3", "a/b/c"),
    ("self.lowerAscii() == 'abc' && self.upperAscii() == 'ABC'", "aBc"),
    ("duration(self) > duration('1m') && duration(self) < duration('2m')", "1m30s"),
    ("duration(self) == duration('90s')", "1m30s"),
    ("duration(self) < duration('1s')", "500ms"),
    ("duration(self) == duration('500ms')", ".5s"),
    ("duration(self) == duration('1s')", "1.s"),
    ("duration(self) == duration('1s')", " 1s"),  # not a duration: an error in both
    ("self.a > 1 || self.missing == 1", {"a": 2}),  # error absorbed by ||
    ("self.a > 1 && self.missing == 1", {"a": 0}),  # error absorbed by &&
    ("self.a > 1 && self.missing == 1", {"a": 2}),  # the error surfaces
    ("has(self.a) && !has(self.b)", {"a": 1}),
    ("self.a == 1 ? 'one' : 'other'", {"a": 1}),
    ("self.items.all(i, i > 0) && self.items.exists(i, i == 2)", {"items": [1, 2, 3]}),
    ("self.items.exists_one(i, i > 2)", {"items": [1, 2, 3, 4]}),
    ("self.items.filter(i, i % 2 == 0) == [2, 4]", {"items": [1, 2, 3, 4]}),
    ("self.items.map(i, i * 2) == [2, 4]", {"items": [1, 2]}),
    ("size(self.m) == 2 && 'k' in self.m && !('z' in self.m)", {"m": {"k": 1, "j": 2}}),
    ("self.m.all(k, k.startsWith('x'))", {"m": {"xa": 1, "xb": 2}}),
    ("2 in self.items", {"items": [1, 2]}),
    ("self.items[1] == 2", {"items": [1, 2]}),
    ("self.items[5] == 2", {"items": [1, 2]}),  # index out of bounds: an error in both
    ("self.n == 1", {"n": 1.0}),  # a JSON integer decoded as a float still equals 1
    ("int(self.s) + 1 == 43", {"s": "42"}),
    ("string(self.n) == '7'", {"n": 7}),
    ("self.a == self.b", {"a": [1, {"x": "y"}], "b": [1, {"x": "y"}]}),
    ("self.x + 1", {"x": "a"}),  # no such overload: an error in both
]


@pytest.mark.parametrize(("source", "value"), EXPRESSIONS)
def test_expressions_agree(source: str, value: Any) -> None:
    _agree(source, {"self": value})
