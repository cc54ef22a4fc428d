"""What a conversion reports: warnings about lossy fields, and errors for input it cannot convert."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Names a Kubernetes object in messages: ``Kind namespace/name``."""

    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        return cls(
            kind=str(obj.get("kind", "")),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
        )

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


@dataclass(frozen=True)
class ConversionWarning:
    """One field of one object that the target API cannot keep exactly (or that changes meaning)."""

    obj: ObjectRef
    field: str  # JSON path in the source object, e.g. "spec.targetModels"
    message: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.field}: {self.message}"


@dataclass(frozen=True)
class FieldProblem:
    """An input field the converter cannot work with (API-server style ``path: reason``)."""

    obj: ObjectRef
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.field}: {self.message}"


class ConversionError(Exception):
    """The input cannot be converted; ``problems`` names every offending field."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
