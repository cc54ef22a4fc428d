"""Unknown fields of built-in kinds, from the official Kubernetes Python client's models
(``openapi_types``/``attribute_map``: the published OpenAPI of each type), for
``fieldValidation=Strict`` ("strict decoding error: unknown field \\"spec.replicsa\\"")."""

from __future__ import annotations

import importlib
import re
from functools import cache
from typing import Any

_LIST = re.compile(r"^list\[(.+)\]$", re.IGNORECASE)
_DICT = re.compile(r"^dict\((?:str|string), (.+)\)$|^dict\[str, (.+)\]$", re.IGNORECASE)
_SKIPPED_GROUPS = ("apiextensions.k8s.io",)  # CRDs: their schemas are free-form JSON Schema


@cache
def _fields(model_name: str) -> dict[str, str] | None:
    """JSON field name -> type name of a model (None: not a model)."""
    # imported on first use: importing the kubernetes package at start-up would load its
    # in-cluster configuration before the runtime's entrypoint can redirect it, and is slow
    models = importlib.import_module("kubernetes.client.models")
    model = getattr(models, model_name, None)
    if model is None or not hasattr(model, "openapi_types"):
        return None
    return {model.attribute_map[attr]: kind for attr, kind in model.openapi_types.items()}


def _model_name(version: str, kind: str) -> str:
    return version[:1].upper() + version[1:] + kind


def unknown_fields(group: str, version: str, kind: str, obj: dict[str, Any]) -> list[str]:
    """Paths of the fields of ``obj`` its kind's model does not have (none when the kind has no
    model in the client, or for CRDs)."""
    if group in _SKIPPED_GROUPS or _fields(_model_name(version, kind)) is None:
        return []
    found: list[str] = []
    stack: list[tuple[Any, str, str]] = [(obj, _model_name(version, kind), "")]
    while stack:
        value, type_name, path = stack.pop()
        if (match := _LIST.match(type_name)) is not None:
            if isinstance(value, list):
                stack.extend((item, match.group(1), f"{path}[{i}]") for i, item in enumerate(value))
            continue
        if (match := _DICT.match(type_name)) is not None:
            if isinstance(value, dict):
                inner = match.group(1) or match.group(2)
                stack.extend((item, inner, f"{path}.{key}" if path else key) for key, item in value.items())
            continue
        fields = _fields(type_name)
        if fields is None or not isinstance(value, dict):
            continue  # a scalar, "object" (free-form), or a value of the wrong type (reported elsewhere)
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if key not in fields:
                found.append(child)
            else:
                stack.append((item, fields[key], child))
    return sorted(found)
