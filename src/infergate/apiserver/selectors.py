"""Label selectors (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``) and field
selectors (``path=value``, ``path!=value`` on any dotted field path)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Matcher = Callable[[dict[str, Any]], bool]


class SelectorError(ValueError):
    pass


def _split_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current.strip())
    return terms


_SET_RE = re.compile(r"^([^\s!=]+)\s+(in|notin)\s+\((.*)\)$")
_EQ_RE = re.compile(r"^([^\s!=]+)\s*(==|=|!=)\s*(.*)$")


_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _label_value(value: str, term: str) -> str:
    if len(value) > 63 or not _VALUE_RE.match(value):
        raise SelectorError(f"unable to parse requirement: {term!r}: invalid label value {value!r}")
    return value


def label_selector(text: str | None) -> Matcher:
    if not text:
        return lambda obj: True
    checks: list[tuple[str, str, frozenset[str]]] = []  # (op, key, values)
    for term in _split_terms(text):
        if m := _SET_RE.match(term):
            values = frozenset(_label_value(v.strip(), term) for v in m.group(3).split(",") if v.strip())
            checks.append((m.group(2), m.group(1), values))
        elif m := _EQ_RE.match(term):
            value = _label_value(m.group(3).strip(), term)
            checks.append(("!=" if m.group(2) == "!=" else "=", m.group(1), frozenset({value})))
        elif term.startswith("!") and re.fullmatch(r"![\w./-]+", term):
            checks.append(("!exists", term[1:], frozenset()))
        elif re.fullmatch(r"[\w./-]+", term):
            checks.append(("exists", term, frozenset()))
        else:
            raise SelectorError(f"unable to parse requirement: {term!r}")

    def check(labels: dict[str, str], op: str, key: str, values: frozenset[str]) -> bool:
        if op in ("in", "="):
            return labels.get(key) in values
        if op in ("notin", "!="):
            return labels.get(key) not in values
        if op == "exists":
            return key in labels
        return key not in labels

    def match(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(check(labels, op, key, values) for op, key, values in checks)

    return match


def _field_value(obj: dict[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def field_selector(text: str | None) -> Matcher:
    if not text:
        return lambda obj: True
    checks: list[tuple[str, bool, str]] = []
    for term in _split_terms(text):
        m = _EQ_RE.match(term)
        if not m:
            raise SelectorError(f"invalid field selector term {term!r}")
        checks.append((m.group(1), m.group(2) != "!=", m.group(3).strip()))

    def match(obj: dict[str, Any]) -> bool:
        for path, equal, value in checks:
            actual = _field_value(obj, path)
            if path == "metadata.namespace" and not actual:
                actual = ""
            if (actual == value) != equal:
                return False
        return True

    return match
