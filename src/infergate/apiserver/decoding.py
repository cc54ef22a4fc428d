"""Decoding JSON and YAML request bodies within bounds, as kube-apiserver reads them.

- Non-finite numbers (``NaN``, ``Infinity``, ``1e999``, YAML's ``.nan``/``.inf``) are not
  JSON: refused, so a stored object always encodes as JSON again.
- Nesting deeper than :data:`~infergate.apiserver.limits.MAX_DEPTH` is refused (measured
  without recursion, whatever the depth of the body).
- YAML aliases are bounded (go-yaml's "document contains excessive aliasing" rule, and an
  expanded size of at most twice the body limit), and recursive aliases are refused, so a
  few hundred bytes cannot expand into gigabytes.
- YAML is read as kube-apiserver reads it, as JSON: timestamps and binary stay strings, keys
  become strings.
- Duplicate fields are reported (as paths such as ``metadata.name``) for field validation.

Every failure is a :class:`DecodeError` (a ``ValueError``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from infergate.api import yamlload
from infergate.apiserver.limits import MAX_DEPTH, MAX_REQUEST_BODY_BYTES, TooDeep, check_depth

# go-yaml's alias ratio bounds (decode.go: allowedAliasRatio)
_ALIAS_RATIO_LOW, _ALIAS_RATIO_HIGH = 400_000, 4_000_000
_MAX_EXPANDED_BYTES = 2 * MAX_REQUEST_BODY_BYTES


class DecodeError(ValueError):
    """The body is not valid JSON/YAML, or exceeds a bound."""


@dataclass(frozen=True)
class Decoded:
    value: Any
    duplicates: tuple[str, ...] = field(default=())  # paths of fields given more than once


def _path(parent: str, key: Any) -> str:
    return f"{parent}.{key}" if parent else str(key)


# ------------------------------------------------------------------------------- JSON

def _reject_constant(name: str) -> Any:
    raise DecodeError(f"invalid character '{name[0]}' looking for beginning of value")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise DecodeError(f"json: cannot unmarshal number {text} into a finite float64")
    return value


def decode_json(raw: bytes) -> Decoded:
    """A JSON body; an empty body is ``None``."""
    repeated: dict[int, list[str]] = {}

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                repeated.setdefault(id(obj), []).append(key)
            obj[key] = value
        return obj

    try:
        value = json.loads(raw.decode() or "null", object_pairs_hook=pairs, parse_constant=_reject_constant,
                           parse_float=_finite)
    except RecursionError:
        raise DecodeError(str(TooDeep())) from None
    except DecodeError:
        raise
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an over-long integer
        raise DecodeError(str(exc)) from exc
    try:
        check_depth(value)
    except TooDeep as exc:
        raise DecodeError(str(exc)) from None
    return Decoded(value, tuple(_duplicate_paths(value, repeated)) if repeated else ())


def _duplicate_paths(value: Any, repeated: dict[int, list[str]]) -> list[str]:
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            found.extend(_path(path, key) for key in repeated.get(id(node), ()))
            stack.extend((child, _path(path, key)) for key, child in node.items())
        elif isinstance(node, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node))
    return sorted(found)


# ------------------------------------------------------------------------------- YAML

def _json_key(key: Any) -> str:
    """A YAML map key as sigs.k8s.io/yaml turns it into a JSON key."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, float) and not math.isfinite(key):
        raise DecodeError(f"invalid map key: {key}")
    if isinstance(key, (int, float)):
        return str(key)
    raise DecodeError(f"invalid map key: {key!r}")


class _Loader(yamlload.JsonValueLoader):  # type: ignore[misc]  # libyaml's parser when PyYAML has it
    """The manifest loader with JSON's value space: no timestamps or bytes, string keys, finite floats."""


def _as_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


def _finite_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    value = loader.construct_yaml_float(node)  # type: ignore[arg-type]
    if not math.isfinite(value):
        raise DecodeError(f"json: unsupported value: {value} at line {node.start_mark.line + 1}")
    return float(value)


def _json_map(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    data: dict[str, Any] = {}
    yield data
    data.update((_json_key(k), v) for k, v in loader.construct_mapping(node).items())  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _as_string)
_Loader.add_constructor("tag:yaml.org,2002:binary", _as_string)
_Loader.add_constructor("tag:yaml.org,2002:float", _finite_float)
_Loader.add_constructor("tag:yaml.org,2002:map", _json_map)


class _Frame:
    """A collection node being measured: its expansion's nodes, aliases, bytes and height."""

    def __init__(self, node: yaml.Node, path: str, duplicates: list[str]) -> None:
        self.node = node
        self.path = path
        self.index = 0
        self.nodes, self.aliases, self.size, self.height = 1, 0, 2, 0
        if isinstance(node, yaml.MappingNode):
            self.children = [part for pair in node.value for part in pair]
            keys: set[str] = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                    if key_node.value in keys:
                        duplicates.append(_path(path, key_node.value))
                    keys.add(key_node.value)
        else:
            self.children = list(node.value)

    def child_path(self, index: int) -> str:
        if isinstance(self.node, yaml.MappingNode):
            key = self.node.value[index // 2][0]
            return _path(self.path, key.value if isinstance(key, yaml.ScalarNode) else "?")
        return f"{self.path}[{index}]"

    def add(self, measured: tuple[int, int, int, int], alias: bool) -> None:
        self.nodes += measured[0]
        self.aliases += measured[1] + alias
        self.size += measured[2]
        self.height = max(self.height, measured[3])

    def finish(self) -> tuple[int, int, int, int]:
        height = self.height + 1
        if height > MAX_DEPTH:
            raise DecodeError(str(TooDeep()))
        nodes, aliases = self.nodes, self.aliases
        if self.size > _MAX_EXPANDED_BYTES or (aliases > 100 and nodes > 1000
                                               and aliases / nodes > _alias_ratio(nodes)):
            raise DecodeError("document contains excessive aliasing")
        return nodes, aliases, self.size, height


def _check_graph(root: yaml.Node) -> list[str]:
    """Bound the document's expansion (aliases) and depth; the paths of duplicate keys.

    The composed document is a graph (an alias is a second reference to a node): its
    expansion is measured bottom-up with memoization, never by expanding it, and without
    recursion. An alias to a node still being measured (an ancestor) is a cycle.
    """
    duplicates: list[str] = []
    if isinstance(root, yaml.ScalarNode):
        return duplicates
    measured: dict[int, tuple[int, int, int, int]] = {}
    frames = [_Frame(root, "", duplicates)]
    open_nodes = {id(root)}
    while frames:
        frame = frames[-1]
        if frame.index < len(frame.children):
            index = frame.index
            child = frame.children[index]
            frame.index += 1
            done = measured.get(id(child))
            if done is not None:
                frame.add(done, alias=True)
            elif isinstance(child, yaml.ScalarNode):
                leaf = (1, 0, len(child.value) + 3, 0)
                measured[id(child)] = leaf
                frame.add(leaf, alias=False)
            elif id(child) in open_nodes:
                raise DecodeError("document contains a recursive alias")
            else:
                open_nodes.add(id(child))
                frames.append(_Frame(child, frame.child_path(index), duplicates))
            continue
        frames.pop()
        open_nodes.discard(id(frame.node))
        result = frame.finish()
        measured[id(frame.node)] = result
        if frames:
            frames[-1].add(result, alias=False)
    return sorted(duplicates)


def _alias_ratio(nodes: int) -> float:
    if nodes <= _ALIAS_RATIO_LOW:
        return 0.99
    if nodes >= _ALIAS_RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * (nodes - _ALIAS_RATIO_LOW) / (_ALIAS_RATIO_HIGH - _ALIAS_RATIO_LOW)


def decode_yaml(raw: bytes) -> Decoded:
    """One YAML document (an empty body is ``{}``, a document of comments ``None``)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise DecodeError(str(exc)) from exc
    if not text:
        return Decoded({})
    if yamlload.nesting_exceeds(text, yamlload.MAX_C_DEPTH):  # libyaml's composer would overflow the C stack
        raise DecodeError(str(TooDeep()))
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Decoded(None)
        duplicates = _check_graph(node)
        return Decoded(loader.construct_document(node), tuple(duplicates))
    except yaml.YAMLError as exc:
        raise DecodeError(str(exc)) from exc
    except RecursionError:
        raise DecodeError(str(TooDeep())) from None
    finally:
        loader.dispose()
