"""Reading manifest text for the CLI commands (``validate``, ``convert``, ``migrate check -f``).

Every source is checked before any loader sees it, so bad input is an ``InputError`` naming
the source, never a traceback or a hang:

- manifests are UTF-8 (Kubernetes' YAML and JSON are); otherwise the offending byte is named;
- nesting deeper than ``MAX_DEPTH`` levels is refused (the loaders and validators recurse);
- an alias inside the node it names (a recursive document) is refused;
- a document whose aliases expand it past ``MAX_EXPANDED_NODES`` nodes (and to more than
  ``MAX_ALIAS_RATIO`` times its written size) is refused as excessive aliasing, as kubectl's
  YAML decoder does, instead of expanding a 500-byte "billion laughs" into gigabytes.

The checks walk the YAML event stream (JSON is YAML), which needs no recursion. Standard input
is read as bytes and decoded the same way, whatever the locale; ``tolerant_output`` lets the
commands echo back strings that are not valid Unicode (lone surrogates).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

MAX_DEPTH = 100
MAX_EXPANDED_NODES = 1_000_000
MAX_ALIAS_RATIO = 10


class InputError(ValueError):
    """The source cannot be read as a manifest: not UTF-8, unreadable, too deep, too aliased."""


def tolerant_output() -> None:
    """Let stdout and stderr write any string: a manifest may hold a lone surrogate
    (``"\\ud800"`` in JSON or YAML) that the commands echo back; it is written escaped
    (``\\ud800``) instead of failing with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def decode(source: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                         f"({exc.reason})") from None
    check_structure(source, text)
    return text


def read_file(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
    return decode(str(path), data)


def read_stdin(source: str = "<stdin>") -> str:
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text-only stdin (replaced in tests): already decoded
        text = sys.stdin.read()
        check_structure(source, text)
        return text
    return decode(source, stream.read())


_OPEN = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSE = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def check_structure(source: str, text: str) -> None:
    """Refuse over-deep nesting and excessive aliasing; syntax errors are left to the loader."""
    from infergate.api import yamlload  # here: importing a cli module stays light (no infergate.api)

    depth = 0
    document = 0
    written = 0  # nodes as written, in this document
    frames: list[list[int]] = []  # per open collection: [nodes inside it so far]
    anchored: dict[str, int] = {}  # anchor -> expanded size of its node
    anchors_open: list[str | None] = []
    expanded = 0
    try:
        for event in yamlload.events(text):
            if isinstance(event, yaml.DocumentStartEvent):
                document += 1
                written = expanded = 0
                anchored.clear()
                continue
            if isinstance(event, _OPEN):
                depth += 1
                if depth > MAX_DEPTH:
                    raise InputError(f"{source}: document {document}: nested more than {MAX_DEPTH} levels deep")
                frames.append([1])
                anchors_open.append(event.anchor)
                written += 1
                continue
            if isinstance(event, _CLOSE):
                depth -= 1
                size = frames.pop()[0] if frames else 1
                anchor = anchors_open.pop() if anchors_open else None
                if anchor is not None:
                    anchored[anchor] = size
                if frames:
                    frames[-1][0] += size
                else:
                    expanded += size
                continue
            if isinstance(event, yaml.ScalarEvent):
                written += 1
                size = 1
                if event.anchor is not None:
                    anchored[event.anchor] = 1
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor in anchors_open:
                    raise InputError(f"{source}: document {document}: alias *{event.anchor} refers to a node "
                                     "that contains it (a recursive document)")
                size = anchored.get(event.anchor or "", 1)
            else:
                continue
            if frames:
                frames[-1][0] += size
            else:
                expanded += size
            total = expanded + sum(frame[0] for frame in frames)
            if total > MAX_EXPANDED_NODES and total > MAX_ALIAS_RATIO * max(written, 1):
                raise InputError(f"{source}: document {document}: excessive aliasing (its aliases expand it "
                                 f"to more than {MAX_EXPANDED_NODES:,} nodes)")
    except yaml.YAMLError:
        return  # the loader reports syntax errors with its own message



def valid_unicode(value: Any) -> Any:
    """``value`` with every string made valid Unicode, as Go's JSON decoder reads manifests:
    surrogate pairs written as two escapes (PyYAML keeps them apart) are joined and a lone
    surrogate (``"\\ud800"``) becomes U+FFFD. Regexes (RE2) and output need valid strings."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, dict):
        return {valid_unicode(k): valid_unicode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [valid_unicode(item) for item in value]
    return value
