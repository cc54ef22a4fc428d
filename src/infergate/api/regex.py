"""Regular expressions with RE2 semantics, as the Kubernetes API server and Envoy use them.

The API server evaluates OpenAPI ``pattern`` and CEL ``matches()`` with Go's ``regexp``
(RE2 syntax), and Envoy compiles route regexes with RE2. Python's ``re`` differs: ``$``
also matches before a trailing newline (``'example.com\\n'`` matches ``^[a-z.]+$``), and it
accepts lookarounds and backreferences that RE2 refuses. Every regex infergate evaluates on
behalf of Kubernetes or Envoy goes through this module (PyPI ``google-re2``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

__all__ = ["RegexError", "check", "compile_re2", "search"]


class RegexError(ValueError):
    """A pattern RE2 does not accept; the message is RE2's (``invalid perl operator: (?=``)."""


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # the error is raised to the caller, not printed on stderr
    return options


_OPTIONS = _options()


@lru_cache(maxsize=1024)
def compile_re2(pattern: str) -> Any:
    """The compiled RE2 regex of ``pattern`` (cached); raises :class:`RegexError`."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        message = exc.args[0] if exc.args else exc
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
        raise RegexError(text) from None


def check(pattern: str) -> None:
    """Raise :class:`RegexError` when RE2 would refuse ``pattern``."""
    compile_re2(pattern)


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches anywhere in ``text`` (Go's ``MatchString``, CEL ``matches``)."""
    return compile_re2(pattern).search(text) is not None
