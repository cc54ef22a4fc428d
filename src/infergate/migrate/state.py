"""Migration state kept on the cluster, in the ConfigMap ``infergate-migration-<route>``.

The ConfigMap holds the plan as it was computed at the start (so a resumed run does the same
steps even after the preview objects are gone), the completed step ids, the phase, the
current GA weight, the baseline measurements and a history of transitions. Every transition
is written before the next step starts, so an interrupted run resumes where it stopped and a
finished migration is a no-op.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from infergate.migrate.cluster import Cluster
from infergate.migrate.plan import Plan
from infergate.migrate.resources import CONFIGMAPS
from infergate.util.clock import utc_now

Phase = Literal["running", "paused", "interrupted", "rolled-back", "locked", "done", "failed"]
LOCK_ANNOTATION = "migrate.infergate.io/locked"
STATE_LABEL = "app.kubernetes.io/managed-by"
STATE_LABEL_VALUE = "infergate-migrate"


@dataclass(frozen=True)
class MigrationState:
    plan: Plan
    phase: Phase = "running"
    completed: tuple[str, ...] = ()
    ga_weight: int | None = None
    locked: bool = False
    baseline: dict[str, Any] = field(default_factory=dict)
    history: tuple[dict[str, Any], ...] = ()
    report: dict[str, Any] = field(default_factory=dict)

    def done(self, step_id: str) -> bool:
        return step_id in self.completed

    def complete(self, step_id: str, **extra: Any) -> MigrationState:
        entry = {"at": utc_now(), "step": step_id, **extra}
        return replace(self, completed=(*self.completed, step_id), history=(*self.history, entry))

    def transition(self, phase: Phase, reason: str, **extra: Any) -> MigrationState:
        entry = {"at": utc_now(), "phase": phase, "reason": reason, **extra}
        return replace(self, phase=phase, history=(*self.history, entry))

    @property
    def interrupted_during(self) -> str | None:
        """The step a Ctrl-C (or SIGTERM) stopped, when the last transition was an interruption."""
        last = next((h for h in reversed(self.history) if "phase" in h), None)
        if self.phase != "interrupted" or last is None:
            return None
        return str(last.get("during") or "") or None

    def to_configmap(self) -> dict[str, Any]:
        data = {
            "plan": json.dumps(self.plan.to_dict(), sort_keys=True),
            "phase": self.phase,
            "completed": json.dumps(list(self.completed)),
            "gaWeight": "" if self.ga_weight is None else str(self.ga_weight),
            "locked": "true" if self.locked else "false",
            "baseline": json.dumps(self.baseline, sort_keys=True),
            "history": json.dumps(list(self.history)),
            "report": json.dumps(self.report, sort_keys=True),
        }
        return {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": self.plan.state_name, "namespace": self.plan.namespace,
                         "labels": {STATE_LABEL: STATE_LABEL_VALUE}},
            "data": data,
        }

    @classmethod
    def from_configmap(cls, cm: dict[str, Any]) -> MigrationState:
        data = cm.get("data") or {}
        weight = data.get("gaWeight") or ""
        return cls(
            plan=Plan.from_dict(json.loads(data["plan"])),
            phase=data.get("phase", "running"),
            completed=tuple(json.loads(data.get("completed") or "[]")),
            ga_weight=int(weight) if weight else None,
            locked=data.get("locked") == "true",
            baseline=json.loads(data.get("baseline") or "{}"),
            history=tuple(json.loads(data.get("history") or "[]")),
            report=json.loads(data.get("report") or "{}"),
        )


class StateStore:
    """Reads and writes the state ConfigMap (``dry_run``: nothing is written)."""

    def __init__(self, cluster: Cluster, *, dry_run: bool = False) -> None:
        self.cluster = cluster
        self.dry_run = dry_run

    def load(self, namespace: str, route: str) -> MigrationState | None:
        cm = self.cluster.get(CONFIGMAPS, namespace, f"infergate-migration-{route}")
        return None if cm is None else MigrationState.from_configmap(cm)

    def save(self, state: MigrationState) -> MigrationState:
        if not self.dry_run:
            self.cluster.apply(CONFIGMAPS, state.to_configmap())
        return state

    def delete(self, namespace: str, route: str) -> bool:
        return self.cluster.delete(CONFIGMAPS, namespace, f"infergate-migration-{route}", dry_run=self.dry_run)
