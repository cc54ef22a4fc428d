"""Reading YAML manifests into JSON values, the one way every part of infergate does it.

kubectl (``sigs.k8s.io/yaml``) turns YAML into JSON before anything reads it, so a manifest's
values are JSON values: strings, numbers, booleans, null, lists and string-keyed objects.
PyYAML's SafeLoader differs in two ways that this loader removes:

- an unquoted timestamp (``creationTimestamp: 2026-01-01T00:00:00Z``) or date becomes a
  ``datetime``/``date`` there; here it stays the string that was written, as kubectl sends it;
- a non-string key (``1: a``) stays an int there; here it becomes its string, as in JSON.

Everything else is YAML 1.1 as kubectl reads it (``on``/``yes`` are booleans).
"""

from __future__ import annotations

from typing import Any

import yaml

YAMLError = yaml.YAMLError
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class JsonValueLoader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver: timestamps and dates load as strings."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def _timestamp_text(loader: JsonValueLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]  # a timestamp is a ScalarNode


# An explicit ``!!timestamp`` tag keeps its text too.
JsonValueLoader.add_constructor(_TIMESTAMP_TAG, _timestamp_text)


class BadScalar(yaml.YAMLError):
    """A tagged scalar PyYAML's constructors cannot build (``!!float ''`` raises IndexError there)."""


def load_all(text: str) -> list[Any]:
    """Every document of a YAML stream as a JSON value (None for an empty document).

    Raises YAMLError when the text is not YAML.
    """
    try:
        return [_string_keys(value) for value in yaml.load_all(text, Loader=JsonValueLoader)]
    except (ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:
        raise BadScalar(f"cannot construct a value: {type(exc).__name__}: {exc}") from None


def load(text: str) -> Any:
    """A single YAML document as a JSON value; raises YAMLError when the text is not YAML."""
    try:
        return _string_keys(yaml.load(text, Loader=JsonValueLoader))
    except (ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:
        raise BadScalar(f"cannot construct a value: {type(exc).__name__}: {exc}") from None


def _string_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {key if isinstance(key, str) else str(key): _string_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_string_keys(item) for item in value]
    return value
