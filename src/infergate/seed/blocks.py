"""Find the shell command blocks and the sample output blocks of the source document.

The document is a web page saved as text: prose in Japanese, commands and sample outputs as
indented ASCII lines. A **command block** starts at an ASCII line beginning with one of the
commands the document uses (``kubectl``, ``helm``, ``curl``, ``IP=``, ``PORT=``) and runs over
its continuation lines (a trailing backslash, a here-document up to ``EOF``, a quoted
argument spanning lines) and over directly following command lines; a blank or prose line
ends it. An **output block** starts at an ASCII line beginning with ``NAME`` (a table header
as ``kubectl get`` prints it) and runs to the next blank line. Each block is dedented by the
indentation of its first line, so a here-document's ``EOF`` ends up in column 0 as bash needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

_COMMAND_START = re.compile(r"^(kubectl|helm|curl)\s+\S|^(IP|PORT)=")
_OUTPUT_START = re.compile(r"^NAME\s+\S")


@dataclass(frozen=True)
class SeedBlock:
    """One block of the document: ``text`` dedented, ``line`` the 1-based line of its first line."""

    kind: Literal["command", "output"]
    text: str
    line: int

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0]


def load_seed_document(seed_dir: Path) -> str:
    """The text of the single ``*.txt`` document in ``seed_dir`` (an error if there is not exactly one)."""
    files = sorted(seed_dir.glob("*.txt"))
    if len(files) != 1:
        raise ValueError(f"{seed_dir}: expected exactly one *.txt source document, found {len(files)}")
    return files[0].read_text(encoding="utf-8")


def _is_ascii(line: str) -> bool:
    return line.isascii()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _dedent(lines: list[str], indent: int) -> str:
    out = []
    for line in lines:
        prefix = line[: min(indent, _indent(line))]
        out.append(line[len(prefix) :].rstrip())
    return "\n".join(out) + "\n"


def _open_single_quotes(text: str) -> bool:
    """Whether ``text`` leaves a shell single-quoted string open (the document uses no escapes)."""
    inside = False
    for char in text:
        if char == "'":
            inside = not inside
    return inside


def _command_end(lines: list[str], start: int) -> int:
    """Index after the last line of the command starting at ``lines[start]``."""
    index = start
    text = lines[index]
    index += 1
    heredoc = re.search(r"<<-?\s*'?(\w+)'?", text)
    if heredoc:
        marker = heredoc.group(1)
        while index < len(lines) and lines[index].strip() != marker:
            index += 1
        if index == len(lines):
            raise ValueError(f"line {start + 1}: here-document without its {marker} line")
        return index + 1
    while index < len(lines) and (text.rstrip().endswith("\\") or _open_single_quotes(text)):
        text += "\n" + lines[index]
        index += 1
    if _open_single_quotes(text):
        raise ValueError(f"line {start + 1}: unterminated single quote")
    return index


def extract_blocks(document: str) -> list[SeedBlock]:
    """Every command and output block of ``document``, in order."""
    lines = document.splitlines()
    blocks: list[SeedBlock] = []
    index = 0
    while index < len(lines):
        stripped = lines[index].strip()
        if _is_ascii(lines[index]) and _COMMAND_START.match(stripped):
            start = index
            while index < len(lines) and _is_ascii(lines[index]) and _COMMAND_START.match(lines[index].strip()):
                index = _command_end(lines, index)
            blocks.append(SeedBlock("command", _dedent(lines[start:index], _indent(lines[start])), start + 1))
        elif _is_ascii(lines[index]) and _OUTPUT_START.match(stripped):
            start = index
            while index < len(lines) and lines[index].strip():
                index += 1
            blocks.append(SeedBlock("output", _dedent(lines[start:index], _indent(lines[start])), start + 1))
        else:
            index += 1
    return blocks
