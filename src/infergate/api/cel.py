"""A small interpreter for the CEL subset used by CRD ``x-kubernetes-validations`` rules.

It covers what the Gateway API and GIE CRDs use, with the semantics of the Kubernetes
API server's CEL environment:

- literals: int, uint (``1u``), double, bool, null, strings ('...', "...", triple-quoted,
  raw ``r"..."``), lists and maps;
- operators: ``! - * / % + < <= > >= == != in && || ?:`` with CEL's error absorption for
  ``&&``, ``||`` and the conditional (``false && error`` is false, ``true || error`` is true);
- member access (``self.x``; an absent field is the error ``no such key: x``), indexing,
  ``__namespace__``-style escaping of reserved property names;
- macros ``has``, ``all``, ``exists``, ``exists_one``, ``filter``, ``map``;
- functions ``size``, ``contains``, ``startsWith``, ``endsWith``, ``matches`` (RE2 search),
  ``split``, ``lowerAscii``, ``upperAscii``, ``trim``, ``join``, ``duration``, ``int``,
  ``uint``, ``double``, ``string``, ``isIP``, ``isCIDR``.

Values are plain JSON values (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``,
``None``) plus :class:`Duration`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from infergate.api import regex

__all__ = ["CelError", "Duration", "Program", "compile_rule", "evaluate"]


class CelError(Exception):
    """A CEL compile or evaluation error (message as cel-go words it where it matters)."""


@dataclass(frozen=True, order=True)
class Duration:
    """A CEL ``google.protobuf.Duration`` value, in nanoseconds."""

    nanos: int


_DURATION_UNITS = {
    "h": 3600 * 10**9,
    "m": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 10**3,
    "µs": 10**3,  # U+00B5 micro sign
    "μs": 10**3,  # U+03BC Greek mu
    "ns": 1,
}
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|h|m|s)")


def parse_duration(text: str) -> Duration:
    """Parse a Go duration string (``1h30m``, ``500ms``, ``-1.5s``, ``.5s``, ``0``), as cel-go
    does with ``time.ParseDuration`` (no surrounding spaces).

    This is the API package's own copy of ``infergate.util.durations.parse_go_duration_nanos``
    (``api`` imports nothing of infergate); both follow Go's grammar.
    """
    s = text
    sign = 1
    if s.startswith(("-", "+")):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return Duration(0)
    if not s:
        raise CelError(f"invalid duration: {text!r}")
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _DURATION_RE.match(s, pos)
        if m is None:
            raise CelError(f"invalid duration: {text!r}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return Duration(sign * round(total))


# ---------------------------------------------------------------------------------------
# Lexer

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>[rR]?(?:\"\"\"(?:.|\n)*?\"\"\"|'''(?:.|\n)*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))
  | (?P<number>0x[0-9a-fA-F]+u?|\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+u?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>&&|\|\||==|!=|<=|>=|[-+*/%!<>?:.,\[\](){}])
    """,
    re.VERBOSE,
)

_RESERVED = {
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokenize(src: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(src):
        m = _TOKEN_RE.match(src, pos)
        if m is None:
            raise CelError(f"Syntax error: token recognition error at: '{src[pos]}'")
        kind = m.lastgroup or ""
        if kind != "ws":
            toks.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    toks.append(_Tok("eof", "", pos))
    return toks


_ESCAPES = {
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
    "?": "?",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}


def _unquote(text: str) -> str:
    raw = text[0] in "rR"
    if raw:
        text = text[1:]
    body = text[3:-3] if text[:3] in ('"""', "'''") else text[1:-1]
    if raw:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in "xX":
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        elif nxt == "u":
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        elif nxt == "U":
            out.append(chr(int(body[i + 2 : i + 10], 16)))
            i += 10
        elif nxt.isdigit():
            out.append(chr(int(body[i + 1 : i + 4], 8)))
            i += 4
        else:
            raise CelError(f"invalid escape sequence: \\{nxt}")
    return "".join(out)


# ---------------------------------------------------------------------------------------
# AST: tuples keep the evaluator small and fast.
#   ("lit", value) ("ident", name) ("select", operand, field) ("has", operand, field)
#   ("index", operand, index) ("call", name, target|None, args) ("list", items)
#   ("map", [(k, v)]) ("unary", op, operand) ("binary", op, left, right)
#   ("cond", c, a, b) ("and", a, b) ("or", a, b) ("macro", name, target, var, expr[, expr2])

Node = tuple[Any, ...]


class _Parser:
    def __init__(self, src: str) -> None:
        self.toks = _tokenize(src)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def accept(self, text: str) -> bool:
        t = self.peek()
        if t.kind in ("op", "ident") and t.text == text:
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            t = self.peek()
            raise CelError(f"Syntax error: expected '{text}' at {t.pos}, got '{t.text}'")

    def parse(self) -> Node:
        node = self.expr()
        if self.peek().kind != "eof":
            t = self.peek()
            raise CelError(f"Syntax error: extraneous input '{t.text}' at {t.pos}")
        return node

    def expr(self) -> Node:
        cond = self.or_()
        if self.accept("?"):
            a = self.or_()
            self.expect(":")
            b = self.expr()
            return ("cond", cond, a, b)
        return cond

    def or_(self) -> Node:
        left = self.and_()
        while self.accept("||"):
            left = ("or", left, self.and_())
        return left

    def and_(self) -> Node:
        left = self.rel()
        while self.accept("&&"):
            left = ("and", left, self.rel())
        return left

    def rel(self) -> Node:
        left = self.add()
        while True:
            t = self.peek()
            if (t.kind == "op" and t.text in ("<", "<=", ">", ">=", "==", "!=")) or (
                t.kind == "ident" and t.text == "in"
            ):
                self.next()
                left = ("binary", t.text, left, self.add())
            else:
                return left

    def add(self) -> Node:
        left = self.mul()
        while self.peek().kind == "op" and self.peek().text in ("+", "-"):
            op = self.next().text
            left = ("binary", op, left, self.mul())
        return left

    def mul(self) -> Node:
        left = self.unary()
        while self.peek().kind == "op" and self.peek().text in ("*", "/", "%"):
            op = self.next().text
            left = ("binary", op, left, self.unary())
        return left

    def unary(self) -> Node:
        if self.accept("!"):
            return ("unary", "!", self.unary())
        if self.accept("-"):
            operand = self.unary()
            if (
                operand[0] == "lit"
                and isinstance(operand[1], int | float)
                and not isinstance(operand[1], bool)
            ):
                return ("lit", -operand[1])
            return ("unary", "-", operand)
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.accept("."):
                t = self.next()
                if t.kind != "ident":
                    raise CelError(f"Syntax error: expected field name at {t.pos}")
                name = t.text
                if self.accept("("):
                    args = self.args(")")
                    node = self.method(node, name, args)
                else:
                    node = ("select", node, _unescape_field(name))
            elif self.accept("["):
                idx = self.expr()
                self.expect("]")
                node = ("index", node, idx)
            else:
                return node

    def args(self, close: str) -> list[Node]:
        out: list[Node] = []
        if self.accept(close):
            return out
        while True:
            out.append(self.expr())
            if self.accept(close):
                return out
            self.expect(",")

    def method(self, target: Node, name: str, args: list[Node]) -> Node:
        if name in ("all", "exists", "exists_one", "filter", "map"):
            if len(args) not in (2, 3) or args[0][0] != "ident":
                raise CelError(f"Syntax error: invalid macro {name}")
            var = args[0][1]
            if len(args) == 3:
                return ("macro", name, target, var, args[1], args[2])
            return ("macro", name, target, var, args[1])
        return ("call", name, target, args)

    def primary(self) -> Node:
        t = self.next()
        if t.kind == "number":
            return ("lit", _number(t.text))
        if t.kind == "string":
            return ("lit", _unquote(t.text))
        if t.kind == "ident":
            if t.text == "true":
                return ("lit", True)
            if t.text == "false":
                return ("lit", False)
            if t.text == "null":
                return ("lit", None)
            if self.accept("("):
                args = self.args(")")
                if t.text == "has":
                    if len(args) != 1 or args[0][0] != "select":
                        raise CelError("Syntax error: invalid argument to has() macro")
                    return ("has", args[0][1], args[0][2])
                return ("call", t.text, None, args)
            return ("ident", t.text)
        if t.kind == "op":
            if t.text == "(":
                node = self.expr()
                self.expect(")")
                return node
            if t.text == "[":
                return ("list", self.args("]"))
            if t.text == "{":
                entries: list[tuple[Node, Node]] = []
                if not self.accept("}"):
                    while True:
                        k = self.expr()
                        self.expect(":")
                        entries.append((k, self.expr()))
                        if self.accept("}"):
                            break
                        self.expect(",")
                return ("map", entries)
        raise CelError(f"Syntax error: mismatched input '{t.text}' at {t.pos}")


def _number(text: str) -> int | float:
    if text.endswith("u"):
        text = text[:-1]
    if text.lower().startswith("0x"):
        return int(text, 16)
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)


_ESCAPED_FIELD = re.compile(r"__(dash|dot|slash|underscores|[a-z]+)__")


def _unescape_field(name: str) -> str:
    """Undo the API server's escaping of property names (``__namespace__`` -> ``namespace``)."""
    if name.startswith("__") and name.endswith("__") and name[2:-2] in _RESERVED:
        return name[2:-2]
    return (
        name.replace("__underscores__", "__")
        .replace("__dot__", ".")
        .replace("__dash__", "-")
        .replace("__slash__", "/")
    )


# ---------------------------------------------------------------------------------------
# Evaluator

_ERR = object()  # marker: a sub-expression evaluated to an error (absorbed by && / ||)


class _EvalError(Exception):
    pass


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "double"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "map"
    if isinstance(v, Duration):
        return "google.protobuf.Duration"
    if v is None:
        return "null_type"
    return type(v).__name__


def _overload(name: str, *args: Any) -> _EvalError:
    return _EvalError(f"no such overload: {name}({', '.join(_type_name(a) for a in args)})")


def _matches(text: str, pattern: str) -> bool:
    """CEL ``matches``: an RE2 search, as cel-go's (Go ``regexp.MatchString``)."""
    try:
        return regex.search(pattern, text)
    except regex.RegexError as e:
        raise _EvalError(f"invalid regex {pattern!r}: {e}") from e


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _equals(a: Any, b: Any) -> bool:
    if _is_num(a) and _is_num(b):
        return bool(a == b)
    if type(a) is not type(b) and not (a is None or b is None):
        return False
    return bool(a == b)


def _compare(op: str, a: Any, b: Any) -> bool:
    ok = (_is_num(a) and _is_num(b)) or (type(a) is type(b) and isinstance(a, str | Duration | bool))
    if not ok:
        raise _overload({"<": "_<_", "<=": "_<=_", ">": "_>_", ">=": "_>=_"}[op], a, b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def _size(v: Any) -> int:
    if isinstance(v, str | list | dict | bytes):
        return len(v)
    raise _overload("size", v)


def _string_fn(name: str, target: Any, args: list[Any]) -> Any:
    if not isinstance(target, str):
        raise _overload(name, target, *args)
    if name == "contains" and len(args) == 1 and isinstance(args[0], str):
        return args[0] in target
    if name == "startsWith" and len(args) == 1 and isinstance(args[0], str):
        return target.startswith(args[0])
    if name == "endsWith" and len(args) == 1 and isinstance(args[0], str):
        return target.endswith(args[0])
    if name == "matches" and len(args) == 1 and isinstance(args[0], str):
        return _matches(target, args[0])
    if name == "split" and args and isinstance(args[0], str):
        if len(args) == 2 and isinstance(args[1], int):
            n = args[1]
            if n == 0:
                return []
            return target.split(args[0], n - 1) if n > 0 else target.split(args[0])
        return target.split(args[0]) if args[0] else list(target)
    if name == "lowerAscii" and not args:
        return "".join(c.lower() if c.isascii() else c for c in target)
    if name == "upperAscii" and not args:
        return "".join(c.upper() if c.isascii() else c for c in target)
    if name == "trim" and not args:
        return target.strip()
    if name == "indexOf" and len(args) == 1 and isinstance(args[0], str):
        return target.find(args[0])
    if name == "replace" and len(args) == 2:
        return target.replace(str(args[0]), str(args[1]))
    raise _overload(name, target, *args)


def _is_ip(v: Any) -> bool:
    if not isinstance(v, str):
        raise _overload("isIP", v)
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return False
    return "%" not in v


def _is_cidr(v: Any) -> bool:
    if not isinstance(v, str):
        raise _overload("isCIDR", v)
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        return False
    return "/" in v


def _global_fn(name: str, args: list[Any]) -> Any:
    if name == "size" and len(args) == 1:
        return _size(args[0])
    if name == "duration" and len(args) == 1 and isinstance(args[0], str):
        try:
            return parse_duration(args[0])
        except CelError as e:
            raise _EvalError(str(e)) from e
    if name == "int" and len(args) == 1:
        v = args[0]
        if isinstance(v, bool):
            raise _overload("int", v)
        if isinstance(v, Duration):
            return v.nanos
        try:
            return int(v)
        except (TypeError, ValueError) as e:
            raise _EvalError(f"cannot convert {v!r} to int") from e
    if name in ("uint", "double") and len(args) == 1:
        try:
            return int(args[0]) if name == "uint" else float(args[0])
        except (TypeError, ValueError) as e:
            raise _EvalError(f"cannot convert {args[0]!r} to {name}") from e
    if name == "string" and len(args) == 1:
        v = args[0]
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)
    if name == "isIP" and len(args) == 1:
        return _is_ip(args[0])
    if name == "isCIDR" and len(args) == 1:
        return _is_cidr(args[0])
    if name in ("matches", "contains", "startsWith", "endsWith") and len(args) == 2:
        return _string_fn(name, args[0], args[1:])
    raise _EvalError(f"undeclared reference to '{name}'")


class _Eval:
    def __init__(self, env: dict[str, Any]) -> None:
        self.env = env
        self.last = _EvalError("error")

    def ev(self, n: Node) -> Any:
        """Evaluate, raising _EvalError on an error value."""
        kind = n[0]
        if kind == "lit":
            return n[1]
        if kind == "ident":
            if n[1] in self.env:
                return self.env[n[1]]
            raise _EvalError(f"undeclared reference to '{n[1]}'")
        if kind == "select":
            obj = self.ev(n[1])
            if isinstance(obj, dict):
                if n[2] in obj:
                    return obj[n[2]]
                raise _EvalError(f"no such key: {n[2]}")
            raise _EvalError(f"type '{_type_name(obj)}' does not support field selection")
        if kind == "has":
            obj = self.ev(n[1])
            if isinstance(obj, dict):
                return n[2] in obj
            raise _EvalError(f"invalid type for field selection: {_type_name(obj)}")
        if kind == "index":
            obj = self.ev(n[1])
            idx = self.ev(n[2])
            if isinstance(obj, list):
                if not _is_num(idx) or int(idx) != idx:
                    raise _overload("_[_]", obj, idx)
                i = int(idx)
                if i < 0 or i >= len(obj):
                    raise _EvalError(f"index out of bounds: {i}")
                return obj[i]
            if isinstance(obj, dict):
                if idx in obj:
                    return obj[idx]
                raise _EvalError(f"no such key: {idx}")
            raise _overload("_[_]", obj, idx)
        if kind == "list":
            return [self.ev(x) for x in n[1]]
        if kind == "map":
            return {self.ev(k): self.ev(v) for k, v in n[1]}
        if kind in ("and", "or"):
            # CEL's commutative short-circuit: the deciding value (False for &&, True for ||)
            # on either side wins, even over an error on the other side.
            decisive = kind == "or"
            a = self.soft(n[1])
            if a is decisive:
                return decisive
            b = self.soft(n[2])
            if b is decisive:
                return decisive
            for v in (a, b):
                if v is _ERR:
                    raise self.last
                if not isinstance(v, bool):
                    raise _overload("_||_" if decisive else "_&&_", a, b)
            return not decisive
        if kind == "cond":
            c = self.ev(n[1])
            if not isinstance(c, bool):
                raise _overload("_?_:_", c)
            return self.ev(n[2] if c else n[3])
        if kind == "unary":
            v = self.ev(n[2])
            if n[1] == "!":
                if not isinstance(v, bool):
                    raise _overload("!_", v)
                return not v
            if not _is_num(v):
                raise _overload("-_", v)
            return -v
        if kind == "binary":
            return self.binary(n[1], self.ev(n[2]), self.ev(n[3]))
        if kind == "call":
            return self.call(n)
        if kind == "macro":
            return self.macro(n)
        raise _EvalError(f"unknown node {kind}")

    def soft(self, n: Node) -> Any:
        try:
            return self.ev(n)
        except _EvalError as e:
            self.last = e
            return _ERR

    def binary(self, op: str, a: Any, b: Any) -> Any:
        if op == "==":
            return _equals(a, b)
        if op == "!=":
            return not _equals(a, b)
        if op in ("<", "<=", ">", ">="):
            return _compare(op, a, b)
        if op == "in":
            if isinstance(b, list):
                return any(_equals(a, x) for x in b)
            if isinstance(b, dict):
                return a in b
            raise _overload("@in", a, b)
        if op == "+":
            if _is_num(a) and _is_num(b):
                return a + b
            if isinstance(a, str) and isinstance(b, str):
                return a + b
            if isinstance(a, list) and isinstance(b, list):
                return a + b
            if isinstance(a, Duration) and isinstance(b, Duration):
                return Duration(a.nanos + b.nanos)
            raise _overload("_+_", a, b)
        if op == "-":
            if _is_num(a) and _is_num(b):
                return a - b
            if isinstance(a, Duration) and isinstance(b, Duration):
                return Duration(a.nanos - b.nanos)
            raise _overload("_-_", a, b)
        if not (_is_num(a) and _is_num(b)):
            raise _overload({"*": "_*_", "/": "_/_", "%": "_%_"}[op], a, b)
        if op == "*":
            return a * b
        if b == 0 and isinstance(b, int):
            raise _EvalError("division by zero" if op == "/" else "modulus by zero")
        if op == "/":
            if isinstance(a, int) and isinstance(b, int):
                q = abs(a) // abs(b)
                return q if (a >= 0) == (b >= 0) else -q
            return a / b
        r = abs(a) % abs(b)
        return r if a >= 0 else -r

    def call(self, n: Node) -> Any:
        name, target_node, arg_nodes = n[1], n[2], n[3]
        args = [self.ev(a) for a in arg_nodes]
        if target_node is None:
            return _global_fn(name, args)
        target = self.ev(target_node)
        if name == "size" and not args:
            return _size(target)
        if name == "join" and isinstance(target, list):
            sep = args[0] if args else ""
            return str(sep).join(str(x) for x in target)
        if isinstance(target, Duration):
            unit = {
                "getHours": 3600 * 10**9,
                "getMinutes": 60 * 10**9,
                "getSeconds": 10**9,
                "getMilliseconds": 10**6,
            }.get(name)
            if unit is not None:
                return target.nanos // unit
        return _string_fn(name, target, args)

    def macro(self, n: Node) -> Any:
        name, target_node, var = n[1], n[2], n[3]
        target = self.ev(target_node)
        if isinstance(target, dict):
            items: list[Any] = list(target.keys())
        elif isinstance(target, list):
            items = target
        else:
            raise _overload(name, target)
        saved = self.env.get(var, _ERR)

        def run(item: Any, node: Node) -> Any:
            self.env[var] = item
            return self.ev(node)

        try:
            if name == "all":
                err: _EvalError | None = None
                for it in items:
                    try:
                        v = run(it, n[4])
                    except _EvalError as e:
                        err = e
                        continue
                    if v is False:
                        return False
                    if not isinstance(v, bool):
                        raise _overload("all", v)
                if err is not None:
                    raise err
                return True
            if name == "exists":
                err = None
                for it in items:
                    try:
                        v = run(it, n[4])
                    except _EvalError as e:
                        err = e
                        continue
                    if v is True:
                        return True
                if err is not None:
                    raise err
                return False
            if name == "exists_one":
                count = 0
                for it in items:
                    if run(it, n[4]) is True:
                        count += 1
                return count == 1
            if name == "filter":
                return [it for it in items if run(it, n[4]) is True]
            if name == "map":
                if len(n) == 6:
                    return [run(it, n[5]) for it in items if run(it, n[4]) is True]
                return [run(it, n[4]) for it in items]
        finally:
            if saved is _ERR:
                self.env.pop(var, None)
            else:
                self.env[var] = saved
        raise _EvalError(f"unknown macro {name}")


@dataclass(frozen=True)
class Program:
    """A compiled CEL expression."""

    source: str
    ast: Node

    def uses(self, name: str) -> bool:
        """Whether the expression refers to the variable ``name`` (e.g. ``oldSelf``)."""
        return _uses(self.ast, name)

    def eval(self, env: dict[str, Any]) -> Any:
        """Evaluate with the given variables; raises :class:`CelError` on an error value."""
        try:
            return _Eval(dict(env)).ev(self.ast)
        except _EvalError as e:
            raise CelError(str(e)) from None
        except RecursionError as e:
            raise CelError("expression too deeply nested") from e


def _uses(node: Any, name: str) -> bool:
    if isinstance(node, tuple):
        if len(node) == 2 and node[0] == "ident":
            return bool(node[1] == name)
        return any(_uses(x, name) for x in node)
    if isinstance(node, list):
        return any(_uses(x, name) for x in node)
    return False


@lru_cache(maxsize=1024)
def compile_rule(source: str) -> Program:
    """Parse a CEL expression (cached); raises :class:`CelError` on a syntax error."""
    return Program(source, _Parser(source).parse())


def evaluate(source: str, **env: Any) -> Any:
    """Compile and evaluate ``source`` with ``env`` as variables (``self``, ``oldSelf``)."""
    return compile_rule(source).eval(env)
