"""Rendering for the migrate commands: rich tables for people, JSON/YAML for automation."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import yaml

FORMATS = ("table", "json", "yaml")


def emit(data: Any, fmt: str, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if fmt == "json":
        out.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    elif fmt == "yaml":
        out.write(yaml.safe_dump(data, sort_keys=False))
    else:
        raise ValueError(fmt)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    from rich.table import Table

    console = console_for(out or sys.stdout)
    t = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        t.add_column(column, overflow="fold" if console.is_terminal else "ignore")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    console.print(t)


# Wide enough that no table row wraps when the output is a pipe or a file (a CI log, `| grep`).
UNWRAPPED_WIDTH = 100_000


def console_for(out: TextIO, *, stderr: bool = False) -> Any:
    """A rich Console on ``out``: the terminal's width on a terminal; otherwise no wrapping at all
    (rich would assume 80 columns and fold every long cell)."""
    from rich.console import Console

    probe = Console(file=out, stderr=stderr)
    if probe.is_terminal:
        return probe
    return Console(file=out, stderr=stderr, width=UNWRAPPED_WIDTH, soft_wrap=True)


def line(text: str, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(text + "\n")
