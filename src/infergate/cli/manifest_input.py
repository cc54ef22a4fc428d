"""Reading manifest text for the CLI commands (``validate``, ``convert``, ``migrate check -f``).

Manifests are UTF-8 (Kubernetes' YAML and JSON are); anything else is a ``NotText`` error naming
the source and the offending byte, never a traceback. Standard input is read as bytes and
decoded the same way, whatever the locale.
"""

from __future__ import annotations

import sys
from pathlib import Path


class NotText(ValueError):
    """The source cannot be read as UTF-8 text (or cannot be read at all)."""


def decode(source: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotText(f"{source}: not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                      f"({exc.reason})") from None


def read_file(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NotText(f"{path}: {exc.strerror or exc}") from None
    return decode(str(path), data)


def read_stdin(source: str = "<stdin>") -> str:
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text-only stdin (replaced in tests): already decoded
        return sys.stdin.read()
    return decode(source, stream.read())
