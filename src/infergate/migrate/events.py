"""What ``infergate migrate run`` tells its watchers as it goes: a small event sink protocol.

The runner calls one method per event (a step started or finished, the route's weights set,
the gates' results, the decision); ``NullSink`` ignores them, ``FanOut`` passes them to
several sinks (the dashboard's migration view, the terminal's progress bar).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Decision = Literal["advance", "pause", "roll back", "fail", "done"]


@dataclass(frozen=True)
class GateMeasurement:
    gate: str
    verdict: str  # pass | fail | paused
    detail: str  # the measurement against its threshold, in words

    @classmethod
    def of(cls, data: dict[str, Any]) -> GateMeasurement:
        return cls(str(data.get("gate", "")), str(data.get("verdict", "")), str(data.get("detail", "")))


class EventSink(Protocol):
    def step_started(self, step: str, description: str) -> None: ...

    def step_finished(self, step: str, verdict: str, detail: str, seconds: float) -> None: ...

    def weights_set(self, preview_weight: int, ga_weight: int) -> None: ...

    def gates_measured(self, ga_weight: int, gates: Sequence[dict[str, Any]]) -> None: ...

    def decided(self, decision: Decision, detail: str) -> None: ...


class NullSink:
    def step_started(self, step: str, description: str) -> None:
        pass

    def step_finished(self, step: str, verdict: str, detail: str, seconds: float) -> None:
        pass

    def weights_set(self, preview_weight: int, ga_weight: int) -> None:
        pass

    def gates_measured(self, ga_weight: int, gates: Sequence[dict[str, Any]]) -> None:
        pass

    def decided(self, decision: Decision, detail: str) -> None:
        pass


class FanOut:
    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = sinks

    def step_started(self, step: str, description: str) -> None:
        for sink in self.sinks:
            sink.step_started(step, description)

    def step_finished(self, step: str, verdict: str, detail: str, seconds: float) -> None:
        for sink in self.sinks:
            sink.step_finished(step, verdict, detail, seconds)

    def weights_set(self, preview_weight: int, ga_weight: int) -> None:
        for sink in self.sinks:
            sink.weights_set(preview_weight, ga_weight)

    def gates_measured(self, ga_weight: int, gates: Sequence[dict[str, Any]]) -> None:
        for sink in self.sinks:
            sink.gates_measured(ga_weight, gates)

    def decided(self, decision: Decision, detail: str) -> None:
        for sink in self.sinks:
            sink.decided(decision, detail)


def decision_of(step: str, verdict: str, rolled_back: bool) -> Decision | None:
    """The decision a finished analysis step stands for (None for other steps' passes)."""
    if verdict == "paused":
        return "pause"
    if verdict == "fail":
        return "roll back" if rolled_back else "fail"
    return "advance" if step.startswith("analyse") else None
