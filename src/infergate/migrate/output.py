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
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out or sys.stdout, width=160, soft_wrap=False)
    t = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    console.print(t)


def line(text: str, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(text + "\n")
