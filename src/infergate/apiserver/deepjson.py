"""JSON for stored objects of any depth.

Request bodies are bounded (:mod:`infergate.apiserver.limits`), but a state database written
before the bound existed may hold objects nested hundreds of levels deep, beyond what the
``json`` module reads or writes within Python's recursion limit. The store and the answers
use :func:`loads` and :func:`dumps`: the ``json`` module, and, only when it runs out of
recursion, an iterative reader or writer, so such objects can still be read, listed and,
above all, deleted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_LITERALS = {"true": True, "false": False, "null": None}
_END = object()


def loads(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        return _parse(text)


def dumps(value: Any) -> str:
    """Compact JSON (no spaces after separators)."""
    try:
        return json.dumps(value, separators=(",", ":"))
    except RecursionError:
        return _encode(value)


def _parse(text: str) -> Any:
    """Iterative JSON reader for valid JSON (what :func:`dumps` wrote)."""
    stack: list[list[Any]] = []  # [container, pending key of a map]
    pos, end = 0, len(text)
    while True:
        pos = _WHITESPACE.match(text, pos).end()  # type: ignore[union-attr]
        if pos >= end:
            raise ValueError("unexpected end of JSON")
        char = text[pos]
        value: Any
        if char in ",:":
            pos += 1
            continue
        if char in "{[":
            stack.append([{} if char == "{" else [], None])
            pos += 1
            continue
        if char in "}]":
            value = stack.pop()[0]
            pos += 1
        elif char == '"':
            match = _STRING.match(text, pos)
            if match is None:
                raise ValueError(f"unterminated string at {pos}")
            value, pos = json.loads(match.group()), match.end()
            top = stack[-1] if stack else None
            if top is not None and isinstance(top[0], dict) and top[1] is None:
                top[1] = value  # a key: its value follows
                continue
        else:
            literal = next((word for word in _LITERALS if text.startswith(word, pos)), None)
            if literal is not None:
                value, pos = _LITERALS[literal], pos + len(literal)
            else:
                match = _NUMBER.match(text, pos)
                if match is None or match.end() == pos:
                    raise ValueError(f"invalid JSON at {pos}")
                number = match.group()
                value = float(number) if match.group(1) or match.group(2) else int(number)
                pos = match.end()
        if not stack:
            if _WHITESPACE.match(text, pos).end() != end:  # type: ignore[union-attr]
                raise ValueError(f"extra data at {pos}")
            return value
        top = stack[-1]
        if isinstance(top[0], dict):
            top[0][top[1]] = value
            top[1] = None
        else:
            top[0].append(value)


def _encode(value: Any) -> str:
    """Iterative JSON writer."""
    parts: list[str] = []
    stack: list[tuple[Iterator[Any], bool, list[bool]]] = []  # items, is a map, [first]

    def begin(item: Any) -> None:
        if isinstance(item, dict):
            parts.append("{")
            stack.append((iter(item.items()), True, [True]))
        elif isinstance(item, (list, tuple)):
            parts.append("[")
            stack.append((iter(item), False, [True]))
        else:
            parts.append(json.dumps(item))

    begin(value)
    while stack:
        items, is_map, first = stack[-1]
        item: Any = next(items, _END)
        if item is _END:
            parts.append("}" if is_map else "]")
            stack.pop()
            continue
        if not first[0]:
            parts.append(",")
        first[0] = False
        if is_map:
            key, child = item
            parts.append(json.dumps(key if isinstance(key, str) else json.dumps(key)) + ":")
            begin(child)
        else:
            begin(item)
    return "".join(parts)
