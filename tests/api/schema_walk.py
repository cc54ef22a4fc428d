"""Walk the generated schemas of every CRD-backed type (helpers for the rule tests)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from infergate.api import registry


def crd_types() -> list[registry.ResourceType]:
    return [t for t in registry.all_types() if not t.builtin]


def type_id(t: registry.ResourceType) -> str:
    suffix = (
        f"@{t.release}" if t.group == "inference.networking.x-k8s.io" and t.kind == "InferencePool" else ""
    )
    return f"{t.kind}{suffix}"


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(schema path, node) for every node; list items are ``[]``, map values ``{}``."""
    yield path, schema
    for key, sub in (schema.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{key}" if path else key)
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def concrete(path: str) -> str:
    """The field path of the first element along a schema path (``a[].b`` -> ``a[0].b``)."""
    return path.replace("[]", "[0]").replace("{}", ".key")


def all_nodes() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type id, schema path, node) over every CRD-backed type."""
    for t in crd_types():
        for path, node in walk(t.schema()):
            yield type_id(t), path, node
