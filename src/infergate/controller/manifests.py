"""Reading Kubernetes manifests from YAML text and files (multi-document, ``List`` kinds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from infergate.api import yamlload

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class ManifestParseError(ValueError):
    """A manifest file the controller cannot read: invalid YAML, or a document that is not an object."""


def parse_manifests(text: str, source: str = "<string>") -> list[dict[str, Any]]:
    try:
        docs = yamlload.load_all(text)
    except yaml.YAMLError as exc:
        raise ManifestParseError(f"{source}: invalid YAML: {exc}") from exc
    return list(_flatten(docs, source))


def _flatten(docs: list[Any], source: str) -> Iterator[dict[str, Any]]:
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ManifestParseError(f"{source}: document {i}: expected a mapping, got {type(doc).__name__}")
        if doc.get("kind") == "List" or (str(doc.get("kind", "")).endswith("List") and "items" in doc):
            yield from _flatten(list(doc.get("items") or []), source)
            continue
        if not doc.get("apiVersion") or not doc.get("kind"):
            raise ManifestParseError(f"{source}: document {i}: apiVersion and kind: Required value")
        yield doc


def read_manifest_file(path: Path) -> list[dict[str, Any]]:
    return parse_manifests(path.read_text(encoding="utf-8"), str(path))
