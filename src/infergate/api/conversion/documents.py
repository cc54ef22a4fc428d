"""Reading and writing multi-document YAML (and JSON) manifests, the way kubectl does.

Parsing is :mod:`infergate.api.yamlload` (YAML 1.1 as kubectl's ``sigs.k8s.io/yaml`` reads it:
``on``/``yes`` are booleans, unquoted timestamps stay the strings that were written). Each
document keeps its original text, so a document the conversion does not change is written
back byte for byte, comments and key order included.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from infergate.api import yamlload

Obj = dict[str, Any]


class ManifestError(Exception):
    """A manifest cannot be read (``source`` names the file, with a line when YAML says so)."""


@dataclass(frozen=True)
class Document:
    """One document of a manifest stream."""

    source: str  # file path, or "<stdin>"
    index: int  # position in its source, from 0
    data: Any  # the JSON value (dicts, lists, scalars); None for an empty document
    text: str | None  # the document's original YAML text, for verbatim passthrough

    @property
    def where(self) -> str:
        return f"{self.source} (document {self.index + 1})"


def read_documents(text: str, source: str) -> list[Document]:
    """Split ``text`` into documents; JSON files (one value) are accepted too."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return [Document(source, 0, json.loads(text), None)]
        except ValueError:
            pass  # YAML flow style, not JSON: parse as YAML
    try:
        values = yamlload.load_all(text)
        chunks = _document_texts(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: invalid YAML: {exc}") from None
    if len(chunks) != len(values):  # pragma: no cover - both come from the same parser
        chunks = [None] * len(values)
    return [
        Document(source, i, value, chunk) for i, (value, chunk) in enumerate(zip(values, chunks, strict=True))
    ]


def _document_texts(text: str) -> list[str | None]:
    """The source text of each document, without its ``---``/``...`` markers."""
    out: list[str | None] = []
    prev_end = 0
    start: Any = None
    for event in yamlload.events(text):
        if isinstance(event, yaml.DocumentStartEvent):
            start = event
        elif isinstance(event, yaml.DocumentEndEvent):
            before = text[prev_end : _index(start.start_mark)]
            body = text[_index(start.end_mark) : _index(event.start_mark)]
            lines = (before + body).splitlines()
            while lines and not lines[0].strip():
                lines.pop(0)
            while lines and not lines[-1].strip():
                lines.pop()
            out.append("\n".join(lines) + "\n" if lines else None)
            prev_end = _index(event.end_mark)
    return out


def _index(mark: Any) -> int:
    return int(mark.index) if mark is not None else 0


class _Dumper(yaml.SafeDumper):
    """kubectl-like YAML: insertion order, block style, ``|`` for multi-line strings, no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def dump_yaml_document(obj: Any) -> str:
    return yaml.dump(
        obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 16
    )


def write_yaml(items: Iterable[tuple[Any, str | None]]) -> str:
    """A YAML stream; each item is (object, original text or None), the text used verbatim when given."""
    parts = [text if text is not None else dump_yaml_document(obj) for obj, text in items]
    return "---\n".join(parts)


def write_json(objects: Sequence[Any]) -> str:
    """One object, or a ``List`` of several, as kubectl prints them."""
    if len(objects) == 1:
        value: Any = objects[0]
    else:
        value = {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": list(objects)}
    return json.dumps(value, indent=4, ensure_ascii=False) + "\n"
