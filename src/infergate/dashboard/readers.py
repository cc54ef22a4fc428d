"""A ``status`` reader over a running gateway's own view: its provider's snapshot and statuses.

The gateway (``infergate gateway``/``up``, ``infergate serve``) already holds every object it
reads; the dashboard reads them from there instead of asking the Kubernetes API again. The
status of an object is the one its provider returned (the API server's), else the one the last
reconcile computed (a manifest directory has none of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from infergate.controller.resources import ObjectRef
from infergate.controller.snapshot import Snapshot


class GatewayViewReader:
    def __init__(self, snapshot: Callable[[], Snapshot], statuses: Callable[[], Mapping[ObjectRef, Any]],
                 description: str) -> None:
        self._snapshot = snapshot
        self._statuses = statuses
        self.description = description

    def list_objects(self, group: str, kind: str) -> list[dict[str, Any]]:
        statuses = self._statuses()
        found = []
        for obj in self._snapshot().list(group, kind):
            body = dict(obj.body)
            if not body.get("status") and obj.ref in statuses:
                body["status"] = statuses[obj.ref]
            found.append(body)
        return found
