"""Reading YAML manifests into JSON values, the one way every part of infergate does it.

kubectl (``sigs.k8s.io/yaml``) turns YAML into JSON before anything reads it, so a manifest's
values are JSON values: strings, numbers, booleans, null, lists and string-keyed objects.
PyYAML's SafeLoader differs in two ways that this loader removes:

- an unquoted timestamp (``creationTimestamp: 2026-01-01T00:00:00Z``) or date becomes a
  ``datetime``/``date`` there; here it stays the string that was written, as kubectl sends it;
- a non-string key (``1: a``, ``on: a``, ``~: a``) stays an int, a bool or None there; here it
  becomes its JSON text (``"1"``, ``"true"``, ``"null"``), as kubectl makes it.

Everything else is YAML 1.1 as kubectl reads it (``on``/``yes`` are booleans).

Parsing uses libyaml's C parser when PyYAML was built with it (about 9x faster on the
gateway-api CRD bundle; resolving and constructing values stay PyYAML's Python code, so values
are the same). Two cases go to the pure-Python parser instead, so users see what they saw before:

- a text libyaml refuses: the pure-Python parser's report is the one raised (it quotes the line
  with a caret; libyaml's reports have the line and column only, and some say less, e.g. an
  undefined alias without its name); a text only libyaml refuses (``k: [a:]``) loads as before;
- a text nested deeper than :data:`MAX_C_DEPTH`: libyaml's composer recurses on the C stack
  and crashes the process (SIGSEGV) some 30,000 levels deep, where the pure-Python one raises
  ``RecursionError``. :func:`nesting_exceeds` tells, without recursion.

One change: a tab or a ``?`` inside a plain scalar (``name: a<TAB>b``), valid YAML that go-yaml
(kubectl) reads, now loads; PyYAML's pure-Python scanner refused it.

:func:`events` is the parser's event stream, chosen the same way (the CLI's structure checks and
the converter's document splitting walk it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any, TypeVar

import yaml

YAMLError = yaml.YAMLError
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"

WITH_LIBYAML: bool = bool(getattr(yaml, "__with_libyaml__", False))
# Deeper texts are not given to libyaml's composer: it recurses on the C stack (some 280 bytes a
# level: 8 MiB, glibc's default for the main thread and threads, overflows near 30,000 levels). The
# pure-Python composer (and _string_keys) raise RecursionError some 500 levels deep.
MAX_C_DEPTH = 1000

_RESOLVERS = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class PythonJsonValueLoader(yaml.SafeLoader):
    """The pure-Python SafeLoader without the timestamp resolver: timestamps and dates load as strings."""

    yaml_implicit_resolvers = _RESOLVERS


_FAST_BASE: type[yaml.SafeLoader] = yaml.CSafeLoader if WITH_LIBYAML else yaml.SafeLoader  # type: ignore[assignment]


class JsonValueLoader(_FAST_BASE):  # type: ignore[valid-type,misc]  # libyaml's loader when PyYAML has it
    """:class:`PythonJsonValueLoader` on libyaml's C parser when PyYAML was built with it."""

    yaml_implicit_resolvers = _RESOLVERS


def _timestamp_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]  # a timestamp is a ScalarNode


# An explicit ``!!timestamp`` tag keeps its text too.
JsonValueLoader.add_constructor(_TIMESTAMP_TAG, _timestamp_text)
PythonJsonValueLoader.add_constructor(_TIMESTAMP_TAG, _timestamp_text)


class BadScalar(yaml.YAMLError):
    """A tagged scalar PyYAML's constructors cannot build (``!!float ''`` raises IndexError there)."""


def one_line(exc: yaml.YAMLError) -> str:
    """A parse error in one line, for a list of results: ``line L, column C: what`` (PyYAML's own text
    spans three to five lines: the problem, the context, a quoted line with a caret)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = ", ".join(str(part) for part in (exc.context, exc.problem) if part) or type(exc).__name__
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}" if mark is not None else what
    return " ".join(str(exc).split())


def load_all(text: str) -> list[Any]:
    """Every document of a YAML stream as a JSON value (None for an empty document).

    Raises YAMLError when the text is not YAML.
    """
    return _read(text, _all_documents)


def load(text: str) -> Any:
    """A single YAML document as a JSON value; raises YAMLError when the text is not YAML."""
    return _read(text, _single_document)


_T = TypeVar("_T")


def _read(text: str, read: Callable[[type[yaml.SafeLoader], str], _T]) -> _T:
    if WITH_LIBYAML and not nesting_exceeds(text, MAX_C_DEPTH):
        try:
            return read(JsonValueLoader, text)
        except (yaml.YAMLError, UnicodeEncodeError):  # a lone surrogate fails libyaml's UTF-8 encoding
            pass  # the pure-Python parser decides and reports, as it always did (its reports quote the line)
    return read(PythonJsonValueLoader, text)


def events(text: str) -> Iterator[yaml.Event]:
    """The parser events of ``text``, lazily (no recursion: the parsers are state machines).

    libyaml's when PyYAML has it; where libyaml stops with an error, the pure-Python parser
    continues after the events already given (and raises its own error, if any), as in
    :func:`load_all`. The marks' ``index``, ``line`` and ``column`` count characters in both.
    """
    given = 0
    if WITH_LIBYAML:
        try:
            for event in yaml.parse(text, Loader=JsonValueLoader):
                yield event
                given += 1
            return
        except (yaml.YAMLError, UnicodeEncodeError):
            pass
    yield from islice(yaml.parse(text, Loader=PythonJsonValueLoader), given, None)


def _all_documents(loader_class: type[yaml.SafeLoader], text: str) -> list[Any]:
    loader = loader_class(text)
    try:
        documents = []
        while loader.check_data():  # type: ignore[no-untyped-call]  # untyped in the stubs
            documents.append(_string_keys(loader.get_data()))
        return documents
    except (ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:
        raise BadScalar(f"cannot construct a value: {type(exc).__name__}: {exc}") from None
    finally:
        loader.dispose()


def _single_document(loader_class: type[yaml.SafeLoader], text: str) -> Any:
    loader = loader_class(text)
    try:
        return _string_keys(loader.get_single_data())
    except (ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:
        raise BadScalar(f"cannot construct a value: {type(exc).__name__}: {exc}") from None
    finally:
        loader.dispose()


def _key_text(key: Any) -> str:
    """A non-string map key as JSON text, as sigs.k8s.io/yaml (kubectl) writes it: ``true``,
    ``false``, ``null``, the number."""
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


def _string_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else _key_text(key): _string_keys(item) for key, item in value.items()
        }
    if isinstance(value, list):
        return [_string_keys(item) for item in value]
    return value


# ------------------------------------------------------------------ nesting depth, without recursion

# A block collection nested in another starts in a greater column (a block sequence that is a
# mapping's value may share its column), and a collection starts after the indentation, the
# indicators (``- ``, ``? ``, ``: ``, ``--- ``) and the node properties (``&anchor``, ``!tag``) that
# open its line. So block nesting is at most twice (that widest line opening + 1), and flow
# nesting at most the number of ``[`` and ``{``.
_LINE_OPENING = re.compile(r"^[ \t]*(?:(?:---|[-?:]|[&!]\S*)[ \t]+)*", re.MULTILINE)
_OTHER_BREAKS = re.compile("[\r\x85\u2028\u2029]")  # YAML line breaks that are not "\n"
_OPEN = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSE = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def _depth_bound(text: str) -> int:
    """An upper bound of the nesting depth of ``text``'s collections (cheap: a regex and two counts)."""
    if _OTHER_BREAKS.search(text):
        text = _OTHER_BREAKS.sub("\n", text)
    widest = max(map(len, _LINE_OPENING.findall(text)), default=0)
    return 2 * (widest + 1) + text.count("[") + text.count("{")


def nesting_exceeds(text: str, limit: int) -> bool:
    """Whether ``text`` nests collections more than ``limit`` deep before any syntax error in it.

    Measured on the parser's events (no recursion), and only when the cheap bound of
    :func:`_depth_bound` exceeds ``limit``.
    """
    if _depth_bound(text) <= limit:
        return False
    depth = 0
    try:
        for event in yaml.parse(text, Loader=JsonValueLoader):
            if isinstance(event, _OPEN):
                depth += 1
                if depth > limit:
                    return True
            elif isinstance(event, _CLOSE):
                depth -= 1
    except (yaml.YAMLError, UnicodeEncodeError):
        return False  # a composer stops at the same error, no deeper than measured
    return False
