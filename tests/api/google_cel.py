"""Google's CEL runtime (PyPI ``cel-expr-python``, cel-cpp) with the Kubernetes CEL environment's
conventions, as an oracle for the hand-written interpreter in :mod:`infergate.api.cel`.

Kubernetes exposes an object's properties to CEL under escaped names (``namespace`` is
``__namespace__``, ``a.b`` is ``a__dot__b``); that is done here on the data, using the
schema to tell declared properties (escaped) from map keys (not escaped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_strings

# CEL's reserved words (k8s.io/apiserver/pkg/cel/escaping.go)
RESERVED = frozenset({
    "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if",
    "import", "let", "loop", "package", "namespace", "return", "var", "void", "while",
})
_ESCAPES = (("__", "__underscores__"), (".", "__dot__"), ("-", "__dash__"), ("/", "__slash__"))
_ACCESSIBLE = re.compile(r"^[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*$")


def escape_property(name: str) -> str | None:
    """The name a property has in CEL, or None when CEL cannot refer to it."""
    if name in RESERVED:
        return f"__{name}__"
    if not _ACCESSIBLE.match(name):
        return None
    for plain, escaped in _ESCAPES:
        name = name.replace(plain, escaped)
    return name


def to_cel(value: Any, schema: dict[str, Any]) -> Any:
    """A JSON value as Kubernetes hands it to CEL: declared properties under escaped names."""
    if isinstance(value, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for key, sub in value.items():
            if props is not None and key in props:
                escaped = escape_property(key)
                if escaped is not None:
                    out[escaped] = to_cel(sub, props[key])
            else:
                out[key] = to_cel(sub, addl if isinstance(addl, dict) else {})
        return out
    if isinstance(value, list):
        items = schema.get("items")
        return [to_cel(item, items if isinstance(items, dict) else {}) for item in value]
    return value


@lru_cache(maxsize=1)
def environment() -> Any:
    return cel.NewEnv(variables={"self": cel.Type.DYN, "oldSelf": cel.Type.DYN},
                      extensions=[ext_strings.ExtStrings()])


@dataclass(frozen=True)
class Outcome:
    """A rule's result: a value, or an error (its message is the runtime's own)."""

    value: Any = None
    error: str | None = None


@lru_cache(maxsize=1024)
def compile_expression(source: str) -> Any:
    """The compiled expression; raises ``RuntimeError`` (cel-cpp's) on a compile error."""
    return environment().compile(source)


def evaluate(source: str, env: dict[str, Any]) -> Outcome:
    """Evaluate ``source`` with already-converted variables (see :func:`to_cel`)."""
    result = compile_expression(source).eval(data=env)
    if result.type() == cel.Type.ERROR:
        return Outcome(error=str(result.value()))
    return Outcome(value=result.plain_value())
