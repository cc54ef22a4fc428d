"""Validation errors in the Kubernetes API server's words.

A :class:`FieldError` prints like ``k8s.io/apimachinery/pkg/util/validation/field.Error``:
``spec.targetPorts[0].number: Invalid value: 0: must be greater than or equal to 1``.
:class:`ValidationFailed` prints like the API server's ``Invalid`` status message:
``InferencePool.inference.networking.k8s.io "x" is invalid: [<error>, <error>]``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "DUPLICATE",
    "FORBIDDEN",
    "INTERNAL",
    "INVALID",
    "NOT_FOUND",
    "NOT_SUPPORTED",
    "OMIT",
    "REQUIRED",
    "TOO_LONG",
    "TOO_MANY",
    "UNKNOWN_FIELD",
    "FieldError",
    "ValidationFailed",
    "go_value",
]

INVALID: Final = "Invalid value"
REQUIRED: Final = "Required value"
NOT_SUPPORTED: Final = "Unsupported value"
FORBIDDEN: Final = "Forbidden"
TOO_MANY: Final = "Too many"
TOO_LONG: Final = "Too long"
DUPLICATE: Final = "Duplicate value"
NOT_FOUND: Final = "Not found"
INTERNAL: Final = "Internal error"
UNKNOWN_FIELD: Final = "Unknown field"

# The ``reason`` of a ``StatusCause`` for each error type (metav1.CauseType).
CAUSE_REASONS: Final[dict[str, str]] = {
    INVALID: "FieldValueInvalid",
    REQUIRED: "FieldValueRequired",
    NOT_SUPPORTED: "FieldValueNotSupported",
    FORBIDDEN: "FieldValueForbidden",
    TOO_MANY: "FieldValueTooMany",
    TOO_LONG: "FieldValueTooLong",
    DUPLICATE: "FieldValueDuplicate",
    NOT_FOUND: "FieldValueNotFound",
    INTERNAL: "InternalError",
    UNKNOWN_FIELD: "FieldValueInvalid",
}


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Final[Any] = _Omit()
"""A ``value`` that is not printed (``field.Required`` and friends)."""

_NO_VALUE_TYPES = {REQUIRED, FORBIDDEN, TOO_LONG, INTERNAL}


def _go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _go_float(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    if v == int(v) and abs(v) < 1e21:
        text = repr(v)
        if "e" in text:
            mant, exp = text.split("e")
            return f"{mant.rstrip('0').rstrip('.')}e{exp[0] if exp[0] in '+-' else '+'}{exp.lstrip('+-').zfill(2)}"
        return str(int(v))
    return repr(v)


def _go_literal(v: Any) -> str:
    """Go's ``%#v`` of an unstructured JSON value."""
    if v is None:
        return "interface {}(nil)"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, str):
        return _go_quote(v)
    if isinstance(v, list):
        return "[]interface {}{" + ", ".join(_go_literal(x) for x in v) + "}"
    if isinstance(v, dict):
        items = ", ".join(f"{_go_quote(str(k))}:{_go_literal(x)}" for k, x in sorted(v.items()))
        return "map[string]interface {}{" + items + "}"
    return repr(v)


def go_value(v: Any) -> str:
    """How ``field.Error`` prints a bad value (``nil`` prints as the string ``"null"``)."""
    return '"null"' if v is None else _go_literal(v)


@dataclass(frozen=True)
class FieldError:
    """One validation problem at a field path, as the API server reports it."""

    path: str
    type: str
    value: Any = OMIT
    detail: str = ""

    @property
    def body(self) -> str:
        """The message without the field path (a ``StatusCause.message``)."""
        if self.type == UNKNOWN_FIELD:
            return "unknown field"
        if self.type in _NO_VALUE_TYPES or self.value is OMIT:
            s = self.type
        else:
            s = f"{self.type}: {go_value(self.value)}"
        if self.detail:
            s += f": {self.detail}"
        return s

    @property
    def reason(self) -> str:
        """The ``StatusCause.reason`` (``FieldValueInvalid``, ``FieldValueRequired``...)."""
        return CAUSE_REASONS.get(self.type, "FieldValueInvalid")

    def __str__(self) -> str:
        if self.type == UNKNOWN_FIELD:
            return f"unknown field {_go_quote(self.path)}"
        if not self.path:
            return self.body
        return f"{self.path}: {self.body}"


def aggregate(errors: list[FieldError]) -> str:
    """``utilerrors.NewAggregate(errs).Error()``: one message, or ``[a, b]`` (deduplicated)."""
    msgs: list[str] = []
    seen: set[str] = set()
    for e in errors:
        m = str(e)
        if m not in seen:
            seen.add(m)
            msgs.append(m)
    if len(msgs) == 1:
        return msgs[0]
    return "[" + ", ".join(msgs) + "]"


@dataclass
class ValidationFailed(Exception):
    """An object failed validation; ``str()`` is the API server's message."""

    kind: str
    name: str
    errors: list[FieldError] = field(default_factory=list)
    group: str = ""

    def __post_init__(self) -> None:
        super().__init__(str(self))

    @property
    def is_strict_decoding(self) -> bool:
        """True when the errors are unknown fields (the server answers 400, not 422)."""
        return bool(self.errors) and all(e.type == UNKNOWN_FIELD for e in self.errors)

    @property
    def code(self) -> int:
        """The HTTP status the API server would answer with."""
        return 400 if self.is_strict_decoding else 422

    @property
    def reason(self) -> str:
        """The ``Status.reason``: ``BadRequest`` or ``Invalid``."""
        return "BadRequest" if self.is_strict_decoding else "Invalid"

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def __str__(self) -> str:
        if self.is_strict_decoding:
            return "strict decoding error: " + ", ".join(str(e) for e in self.errors)
        return f"{self.qualified_kind} {_go_quote(self.name)} is invalid: {aggregate(self.errors)}"

    def causes(self) -> list[dict[str, str]]:
        """``Status.details.causes`` entries."""
        return [{"reason": e.reason, "message": e.body, "field": e.path} for e in self.errors]
