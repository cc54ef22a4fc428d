"""Go duration strings (``50ms``, ``1m30s``, ``1h``), the one parser for flags, env vars and specs."""

from __future__ import annotations

import re

_UNIT_NANOS = {
    "h": 3600 * 10**9,
    "m": 60 * 10**9,
    "s": 10**9,
    "ms": 10**6,
    "us": 10**3,
    "µs": 10**3,
    "μs": 10**3,
    "ns": 1,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|h|m|s)")


class DurationError(ValueError):
    """The text is not a Go duration."""


def parse_go_duration_nanos(text: str) -> int:
    """A Go ``time.ParseDuration`` string as integer nanoseconds.

    ``"1h30m"``, ``"1m30s"``, ``"500ms"``, ``"-1.5s"``, ``"0"``; raises DurationError otherwise.
    """
    s = text.strip()
    sign = 1
    if s[:1] in ("-", "+"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise DurationError(f"invalid duration {text!r}")
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise DurationError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNIT_NANOS[m.group(2)]
        pos = m.end()
    return sign * round(total)


def parse_go_duration(text: str) -> float:
    """A Go duration string as seconds (float)."""
    return parse_go_duration_nanos(text) / 1e9


def parse_seconds(text: str) -> float:
    """A Go duration or a bare number of seconds (``"2"``, ``"0.5"``), as seconds."""
    try:
        return float(text.strip())
    except ValueError:
        return parse_go_duration(text)


def format_go_duration(seconds: float) -> str:
    """Seconds as the shortest exact Go-style string Envoy/Gateway API accept (``"1.5s"``, ``"30s"``)."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    millis = seconds * 1000
    if millis == int(millis):
        return f"{int(millis)}ms"
    return f"{seconds:.9f}".rstrip("0") + "s"
