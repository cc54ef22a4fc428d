"""The migration panel's model: an ``infergate.migrate.events`` sink that keeps what it saw."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from infergate.migrate.events import Decision, GateMeasurement, decision_of
from infergate.util.clock import utc_now

MAX_LOG = 200


@dataclass
class StepRecord:
    step: str
    description: str
    status: str = "running"  # running | pass | fail | paused
    detail: str = ""
    seconds: float | None = None


@dataclass
class MigrationView:
    """Everything the page shows about the migration in progress (``to_dict()`` is the JSON)."""

    route: str = ""  # what is migrated, in words ("HTTPRoute default/chat")
    active: bool = False
    current_step: str | None = None
    preview_weight: int | None = None
    ga_weight: int | None = None
    gates_at_weight: int | None = None
    gates: list[GateMeasurement] = field(default_factory=list)
    decision: Decision | None = None
    decision_detail: str = ""
    steps: list[StepRecord] = field(default_factory=list)
    weights: deque[tuple[str, int, int]] = field(default_factory=lambda: deque(maxlen=MAX_LOG))
    log: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_LOG))

    def _say(self, text: str) -> None:
        self.log.append(f"{utc_now()} {text}")

    def step_started(self, step: str, description: str) -> None:
        self.active = True
        self.current_step = step
        self.steps.append(StepRecord(step, description))
        self._say(f"{step}: {description}")

    def step_finished(self, step: str, verdict: str, detail: str, seconds: float) -> None:
        for record in reversed(self.steps):
            if record.step == step:
                record.status, record.detail, record.seconds = verdict, detail, seconds
                break
        decision = decision_of(step, verdict, rolled_back=False)
        if decision is not None:
            self.decided(decision, detail)
        self._say(f"{step}: {verdict}" + (f" ({detail})" if detail else ""))

    def weights_set(self, preview_weight: int, ga_weight: int) -> None:
        self.preview_weight, self.ga_weight = preview_weight, ga_weight
        self.weights.append((utc_now(), preview_weight, ga_weight))
        self._say(f"weights: {preview_weight}% preview / {ga_weight}% GA")

    def gates_measured(self, ga_weight: int, gates: Sequence[dict[str, Any]]) -> None:
        self.gates_at_weight = ga_weight
        self.gates = [GateMeasurement.of(dict(g)) for g in gates]

    def decided(self, decision: Decision, detail: str) -> None:
        self.decision, self.decision_detail = decision, detail
        if decision in ("roll back", "pause", "fail", "done"):
            self.active = False
        self._say(f"decision: {decision}" + (f" ({detail})" if detail else ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route, "active": self.active, "current_step": self.current_step,
            "preview_weight": self.preview_weight, "ga_weight": self.ga_weight,
            "gates_at_weight": self.gates_at_weight, "gates": [asdict(g) for g in self.gates],
            "decision": self.decision, "decision_detail": self.decision_detail,
            "steps": [asdict(s) for s in self.steps],
            "weights": [{"at": at, "preview": p, "ga": g} for at, p, g in self.weights],
            "log": list(self.log),
        }
