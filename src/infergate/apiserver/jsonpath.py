"""The JSONPath subset of CRD printer columns: ``.a.b``, ``[n]``, ``[*]``, ``['key']`` and
``[?(@.k=="v")]`` filters (``==`` and ``!=``)."""

from __future__ import annotations

import re
from typing import Any

_TOKEN_RE = re.compile(
    r"""\.\s*(?P<field>[A-Za-z0-9_$\-/]+)
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*\*\s*\]
      | \.\*
      | \[\s*['"](?P<quoted>[^'"]*)['"]\s*\]
      | \[\s*\?\(\s*@(?P<fpath>(?:\.[A-Za-z0-9_\-]+)+)\s*(?P<fop>==|!=)\s*(?P<fval>"[^"]*"|'[^']*'|[^)\s]+)\s*\)\s*\]
    """,
    re.VERBOSE,
)


class JSONPathError(ValueError):
    pass


def _tokens(path: str) -> list[re.Match[str]]:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1].strip()
    if path.startswith("$"):
        path = path[1:]
    pos, tokens = 0, []
    while pos < len(path):
        match = _TOKEN_RE.match(path, pos)
        if not match:
            raise JSONPathError(f"unsupported JSONPath {path!r} at {path[pos:]!r}")
        tokens.append(match)
        pos = match.end()
    return tokens


def _literal(text: str) -> Any:
    if text[:1] in "'\"":
        return text[1:-1]
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


def evaluate(obj: Any, path: str) -> list[Any]:
    """All values ``path`` selects in ``obj`` (empty when nothing matches)."""
    nodes = [obj]
    for token in _tokens(path):
        found: list[Any] = []
        for node in nodes:
            if token.group("field") is not None or token.group("quoted") is not None:
                key = token.group("field") if token.group("field") is not None else token.group("quoted")
                if isinstance(node, dict) and key in node:
                    found.append(node[key])
            elif token.group("index") is not None:
                index = int(token.group("index"))
                if isinstance(node, list) and -len(node) <= index < len(node):
                    found.append(node[index])
            elif token.group("fpath") is not None:
                if not isinstance(node, list):
                    continue
                want = _literal(token.group("fval"))
                for item in node:
                    value: Any = item
                    for part in token.group("fpath").split(".")[1:]:
                        value = value.get(part) if isinstance(value, dict) else None
                    if (value == want) == (token.group("fop") == "=="):
                        found.append(item)
            elif isinstance(node, list):
                found.extend(node)
            elif isinstance(node, dict):
                found.extend(node.values())
        nodes = found
    return nodes
