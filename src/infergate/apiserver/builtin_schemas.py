"""The published OpenAPI schemas of the built-in kinds, and what kube-apiserver's decoder
makes of an object against them.

Source: the Kubernetes OpenAPI definitions of release :data:`SCHEMA_VERSION` as the PyPI
package ``kubernetes-validate`` ships them (``kubernetes-json-schema/<version>-local/
_definitions.json``: every ``io.k8s...`` definition with its descriptions, formats, list
and patch extensions and ``x-kubernetes-group-version-kind``; the package spells each
optional type as ``[type, "null"]`` and refers with ``#/$defs/``). They are read on first
use and kept (:class:`Definitions`, one per process through :func:`definitions`).

For a built-in kind kube-apiserver does not run OpenAPI validation: it decodes the body
into the Go types those definitions describe. :func:`decode_check` does what that decoding
refuses or drops:

* a value of the wrong JSON type is a 400, worded as Go's decoder words it
  (``json: cannot unmarshal number into Go struct field ConfigMap.data of type
  map[string]string``), the first one in the document;
* a field the type does not have is an *unknown field* (``spec.replicsa``): refused under
  ``fieldValidation=Strict``, a warning under ``Warn``, dropped in every case.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from infergate.apiserver.shapes import json_type

SCHEMA_VERSION = "v1.37.0"  # the release infergate's discovery announces and kubectl is pinned to
_PACKAGE = "kubernetes_validate"
_REF_PREFIX = "#/$defs/"

QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
SKIPPED_GROUPS = ("apiextensions.k8s.io",)  # CRDs: checked by handlers.crds, their schemas are free-form


class SchemasMissing(RuntimeError):
    """The package with the published schemas is not installed (or lacks this release)."""


def _clean(node: Any) -> Any:
    """A definition as OpenAPI v3 writes it: ``type`` a single name, references to
    ``#/components/schemas/``."""
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, list):
            kinds = [v for v in value if v != "null"]
            if len(kinds) == 1:
                out[key] = kinds[0]
            continue
        if key == "$ref" and isinstance(value, str):
            out[key] = "#/components/schemas/" + value.removeprefix(_REF_PREFIX)
            continue
        out[key] = _clean(value) if key not in ("enum", "required", "x-kubernetes-list-map-keys") else value
    return out


@dataclass(frozen=True)
class Definitions:
    """The definitions of one release, by name, in OpenAPI v3 form."""

    version: str
    schemas: dict[str, dict[str, Any]]
    by_gvk: dict[tuple[str, str, str], str] = field(default_factory=dict)

    @classmethod
    def load(cls, version: str = SCHEMA_VERSION) -> Definitions:
        try:
            root = resources.files(_PACKAGE) / "kubernetes-json-schema" / f"{version}-local" / "_definitions.json"
            raw = json.loads(root.read_text(encoding="utf-8"))["$defs"]
        except (ModuleNotFoundError, FileNotFoundError, KeyError) as exc:
            raise SchemasMissing(f"the Kubernetes {version} OpenAPI definitions are not installed "
                                 f"(PyPI kubernetes-validate): {exc}") from exc
        schemas = {name: _clean(schema) for name, schema in raw.items()}
        by_gvk: dict[tuple[str, str, str], str] = {}
        for name, schema in schemas.items():
            for gvk in schema.get("x-kubernetes-group-version-kind") or []:
                by_gvk.setdefault((gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", "")), name)
        return cls(version, schemas, by_gvk)

    def name_of(self, group: str, version: str, kind: str) -> str | None:
        return self.by_gvk.get((group, version, kind))

    def closure(self, name: str) -> dict[str, dict[str, Any]]:
        """``name`` and every definition it refers to, directly or not."""
        found: dict[str, dict[str, Any]] = {}
        pending = [name]
        while pending:
            current = pending.pop()
            if current in found or current not in self.schemas:
                continue
            found[current] = self.schemas[current]
            pending.extend(_refs(self.schemas[current]))
        return found


def _refs(node: Any) -> list[str]:
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                found.append(ref.rsplit("/", 1)[1])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


@cache
def definitions() -> Definitions:
    """The definitions of :data:`SCHEMA_VERSION`, read once."""
    return Definitions.load()


# ---------------------------------------------------------------------- decoding

class DecodeError(ValueError):
    """The first value of the wrong type, in Go's words (without the kind prefix)."""


def _short(name: str) -> str:
    """``io.k8s.api.apps.v1.DeploymentSpec`` -> ``v1.DeploymentSpec`` (Go's package.Type)."""
    parts = name.split(".")
    return ".".join(parts[-2:])


def _go_type(defs: Definitions, schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _short(ref.rsplit("/", 1)[1])
    kind = schema.get("type")
    if kind == "array":
        return "[]" + _go_type(defs, schema.get("items") or {})
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "map[string]" + _go_type(defs, schema["additionalProperties"])
    if kind == "integer":
        return str(schema.get("format") or "int")
    if kind == "number":
        return "float64"
    if kind == "boolean":
        return "bool"
    if kind == "string":
        return "[]uint8" if schema.get("format") == "byte" else "string"
    return "interface {}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Decoder:
    """One walk over an object: the first type error (Go stops there) and the unknown fields."""

    def __init__(self, defs: Definitions) -> None:
        self.defs = defs
        self.unknown: list[str] = []
        self.locations: list[tuple[dict[str, Any], str]] = []  # (the map holding an unknown field, its key)

    def fail(self, value: Any, struct: str, go_path: str, go_type: str, show_number: bool = False) -> None:
        shown = json_type(value)
        if show_number and shown == "number":
            shown = f"number {_go_number(value)}"
        raise DecodeError(f"json: cannot unmarshal {shown} into Go struct field {struct}.{go_path} of type {go_type}")

    def walk(self, root_name: str, obj: dict[str, Any]) -> None:
        # (value, schema, path for unknown fields, Go's field path, innermost struct)
        stack: list[tuple[Any, dict[str, Any], str, str, str]] = [
            (obj, {"$ref": "#/components/schemas/" + root_name}, "", "", root_name.rsplit(".", 1)[1])]
        while stack:
            value, schema, path, go_path, struct = stack.pop()
            if value is None:
                continue  # null decodes to the zero value
            ref = schema.get("$ref")
            if isinstance(ref, str):
                name = ref.rsplit("/", 1)[1]
                resolved = self.defs.schemas.get(name, {})
                if name == QUANTITY:
                    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                        self.fail(value, struct, go_path, "resource.Quantity")
                    continue
                if name == INT_OR_STRING:
                    if isinstance(value, bool) or not isinstance(value, (str, int)):
                        self.fail(value, struct, go_path, "intstr.IntOrString", show_number=True)
                    continue
                if "properties" in resolved:
                    if not isinstance(value, dict):
                        self.fail(value, struct, go_path, _short(name))
                    struct = name.rsplit(".", 1)[1]
                schema = resolved
            kind = schema.get("type")
            properties = schema.get("properties")
            if isinstance(properties, dict):
                if not isinstance(value, dict):
                    self.fail(value, struct, go_path, "struct")
                # reversed: the stack pops the first field first, so the first error is the first in the document
                for key in reversed(list(value)):
                    child = _join(path, key)
                    if key not in properties:
                        self.unknown.append(child)
                        self.locations.append((value, key))
                        continue
                    stack.append((value[key], properties[key], child, _join(go_path, key), struct))
            elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
                if not isinstance(value, dict):
                    self.fail(value, struct, go_path, _go_type(self.defs, schema))
                inner = schema["additionalProperties"]
                for key in reversed(list(value)):
                    stack.append((value[key], inner, _join(path, key), _join(go_path, key), struct))
            elif kind == "array":
                if not isinstance(value, list):
                    self.fail(value, struct, go_path, _go_type(self.defs, schema))
                inner = schema.get("items") or {}
                for i in reversed(range(len(value))):
                    stack.append((value[i], inner, f"{path}[{i}]", go_path, struct))
            elif kind == "string":
                if not isinstance(value, str):
                    self.fail(value, struct, go_path, _go_type(self.defs, schema))
                if schema.get("format") == "byte":
                    _base64(value)
            elif kind == "boolean":
                if not isinstance(value, bool):
                    self.fail(value, struct, go_path, "bool")
            elif kind == "integer":
                self._integer(value, schema, struct, go_path)
            elif kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
                self.fail(value, struct, go_path, "float64")
            # anything else (RawExtension, FieldsV1, JSON): any value

    def _integer(self, value: Any, schema: dict[str, Any], struct: str, go_path: str) -> None:
        go_type = _go_type(self.defs, schema)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(value, struct, go_path, go_type)
        low, high = _INT_RANGES.get(str(schema.get("format") or "int64"), _INT_RANGES["int64"])
        if isinstance(value, float) or not low <= value <= high:
            self.fail(value, struct, go_path, go_type, show_number=True)


_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _base64(text: str) -> None:
    """A ``[]byte`` field: standard base64 with padding, as Go's decoder reads it (newlines
    are skipped)."""
    data = text.replace("\r", "").replace("\n", "").encode("utf-8", "surrogatepass")
    body = data.rstrip(b"=")
    for index, byte in enumerate(body):
        if byte not in _BASE64:
            raise DecodeError(f"illegal base64 data at input byte {index}")
    if len(data) % 4:  # a last group of fewer than 4 characters
        raise DecodeError(f"illegal base64 data at input byte {len(data) - len(data) % 4}")
    if len(data) - len(body) > 2:
        raise DecodeError(f"illegal base64 data at input byte {len(body)}")


def _go_number(value: int | float) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
        return repr(value)  # "2.0": what the client sent
    return json.dumps(value)


@dataclass(frozen=True)
class Decoded:
    """What decoding an object of a built-in kind found."""

    error: str | None  # the first type error (the request is a 400), or None
    unknown: tuple[str, ...]  # the paths of the fields its type does not have, sorted
    locations: tuple[tuple[dict[str, Any], str], ...] = ()

    def drop_unknown(self) -> None:
        """Remove the unknown fields from the object checked (as decoding into the Go type drops them)."""
        for holder, key in self.locations:
            holder.pop(key, None)


def decode_check(group: str, version: str, kind: str, obj: dict[str, Any],
                 defs: Definitions | None = None) -> Decoded:
    """Type errors and unknown fields of ``obj`` as its kind's Go type would decode it
    (nothing when the kind has no published definition, or is a CRD)."""
    if group in SKIPPED_GROUPS:
        return Decoded(None, ())
    defs = defs or definitions()
    name = defs.name_of(group, version, kind)
    if name is None:
        return Decoded(None, ())
    decoder = _Decoder(defs)
    try:
        decoder.walk(name, obj)
    except DecodeError as exc:
        return Decoded(str(exc), ())
    return Decoded(None, tuple(sorted(decoder.unknown)), tuple(decoder.locations))
