"""The migration in the terminal: an ``infergate.migrate.events`` sink that draws with rich.

Per weight change, a bar of the split between the preview and the GA pool; per analysis, a
table of the gates (each measurement against its threshold, and its verdict); the decision.
Written to stderr, beside the runner's progress lines, so that ``-o json`` stays clean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from infergate.migrate.events import Decision, decision_of

STYLE = {"pass": "green", "fail": "red", "paused": "yellow", "advance": "green", "done": "green",
         "pause": "yellow", "roll back": "red"}


class TerminalSink:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)

    def step_started(self, step: str, description: str) -> None:
        pass  # the runner's progress line says it

    def step_finished(self, step: str, verdict: str, detail: str, seconds: float) -> None:
        decision = decision_of(step, verdict, rolled_back=False)
        if decision is not None and decision != "fail":
            self.decided(decision, detail if decision != "advance" else "")

    def weights_set(self, preview_weight: int, ga_weight: int) -> None:
        table = Table.grid(padding=(0, 1))
        table.add_row(Text(f"preview {preview_weight:3d}%", style="magenta"),
                      ProgressBar(total=100, completed=ga_weight, width=40, style="magenta", complete_style="blue",
                                  finished_style="blue"),
                      Text(f"{ga_weight:3d}% GA", style="blue"))
        self.console.print(table)

    def gates_measured(self, ga_weight: int, gates: Sequence[dict[str, Any]]) -> None:
        table = Table(title=f"gates at {ga_weight}% GA", title_justify="left", show_edge=False)
        table.add_column("gate")
        table.add_column("verdict")
        table.add_column("measurement against threshold")
        for g in gates:
            verdict = str(g.get("verdict", ""))
            table.add_row(str(g.get("gate", "")), Text(verdict, style=STYLE.get(verdict, "")), str(g.get("detail", "")))
        self.console.print(table)

    def decided(self, decision: Decision, detail: str) -> None:
        text = Text("decision: ")
        text.append(decision, style="bold " + STYLE.get(decision, ""))
        if detail:
            text.append(f" ({detail})")
        self.console.print(text)
