"""Typed resources of both inference API generations and Gateway API, validated as the
Kubernetes API server validates them.

Entry points (a small, stable surface):

- :func:`load` — validate, apply CRD defaults, return the typed model (raises
  :class:`ValidationFailed`);
- :func:`validate` / :func:`validate_update` — ``list[FieldError]``, empty when valid;
- :func:`apply_defaults` — what the API server would store, as plain JSON;
- :mod:`infergate.api.registry` — every kind (``by_gvk``, ``by_plural``, ``all_types``);
- models: :mod:`inference_v1alpha2`, :mod:`inference_v1`, :mod:`llmd_v1alpha2`, :mod:`gateway_v1`,
  :mod:`core`;
  every model has ``.to_dict()`` (camelCase JSON, unset fields left out).

The package loads lazily: importing one light module (``infergate.api.yamlload``,
``headers``, ``limits``) does not import the pydantic models, which cost about a third of the
EPP's start (issue 17 defect 8); the names below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infergate.api import core, gateway_v1, inference_v1, inference_v1alpha2, llmd_v1alpha2, registry
    from infergate.api.core import ObjectMeta, Resource
    from infergate.api.errors import FieldError, ValidationFailed
    from infergate.api.objects import apply_defaults, load, load_update, validate, validate_update
    from infergate.api.registry import ResourceType

_SUBMODULES = frozenset(
    {"core", "gateway_v1", "inference_v1", "inference_v1alpha2", "llmd_v1alpha2", "registry"}
)
_NAMES = {
    "ObjectMeta": "core",
    "Resource": "core",
    "FieldError": "errors",
    "ValidationFailed": "errors",
    "apply_defaults": "objects",
    "load": "objects",
    "load_update": "objects",
    "validate": "objects",
    "validate_update": "objects",
    "ResourceType": "registry",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FieldError",
    "ObjectMeta",
    "Resource",
    "ResourceType",
    "ValidationFailed",
    "apply_defaults",
    "core",
    "gateway_v1",
    "inference_v1",
    "inference_v1alpha2",
    "llmd_v1alpha2",
    "load",
    "load_update",
    "registry",
    "validate",
    "validate_update",
]
