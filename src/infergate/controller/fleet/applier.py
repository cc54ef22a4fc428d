"""Writing a fleet's objects: create what is missing, patch what drifted, delete what is no longer wanted.

An object is up to date when the desired manifest is a *subset* of the stored one (the API
server adds defaults: a container's ``terminationMessagePath``, a Service's ``clusterIP``...),
so an unchanged Gateway costs one GET per object and no write. Updates are JSON merge patches
of the desired labels, annotations, owner references and spec (lists are replaced whole).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from infergate.controller.fleet.desired import (
    COMPONENT,
    COMPONENT_LABEL,
    CONTROLLER_ANNOTATION,
    GATEWAY_NAME_LABEL,
    MANAGED_BY,
    MANAGER,
)
from infergate.kube import kinds
from infergate.kube.client import KubeClient
from infergate.kube.errors import AlreadyExists, NotFound
from infergate.kube.kinds import Kind

log = logging.getLogger(__name__)

FLEET_KINDS: tuple[Kind, ...] = (kinds.DEPLOYMENTS, kinds.SERVICES, kinds.POD_DISRUPTION_BUDGETS)
FLEET_SELECTOR = f"{MANAGED_BY}={MANAGER},{COMPONENT_LABEL}={COMPONENT}"


def is_subset(desired: Any, current: Any) -> bool:
    """Whether ``current`` holds everything ``desired`` says (maps: per key; lists: per item, same length)."""
    if isinstance(desired, Mapping):
        return isinstance(current, Mapping) and all(k in current and is_subset(v, current[k])
                                                    for k, v in desired.items())
    if isinstance(desired, list):
        return (isinstance(current, list) and len(desired) == len(current)
                and all(is_subset(d, c) for d, c in zip(desired, current, strict=True)))
    if isinstance(desired, int | float) and isinstance(current, int | float) and not isinstance(desired, bool):
        return float(desired) == float(current)
    return bool(desired == current)


def _patch_of(desired: Mapping[str, Any]) -> dict[str, Any]:
    meta = desired["metadata"]
    patch: dict[str, Any] = {"metadata": {k: meta[k] for k in ("labels", "annotations", "ownerReferences")
                                          if k in meta}}
    patch["spec"] = desired["spec"]
    return patch


def _wanted(desired: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``desired`` the stored object must contain."""
    return {"metadata": {k: v for k, v in desired["metadata"].items() if k not in ("name", "namespace")},
            "spec": desired["spec"]}


class FleetApplier:
    """Applies fleet objects through the one async client."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.writes = 0  # creates, patches and deletes done (for tests and the admin view)

    async def ensure(self, desired: Mapping[str, Any]) -> tuple[str, Mapping[str, Any] | None]:
        """Create or patch one object: ("created" | "updated" | "unchanged", the stored object as read
        before a write; None when it was just created)."""
        kind = kinds.of(desired)
        meta = desired["metadata"]
        path = kind.path(meta["namespace"], meta["name"])
        current = await self.client.get(path)
        if current is None:
            try:
                await self.client.create(kind.path(meta["namespace"]), desired)
                self.writes += 1
                log.info("fleet: created %s %s/%s", kind.kind, meta["namespace"], meta["name"])
                return "created", None
            except AlreadyExists:  # created meanwhile (another writer): check it on the next pass
                return "unchanged", None
        if is_subset(_wanted(desired), current):
            return "unchanged", current
        await self.client.merge_patch(path, _patch_of(desired))
        self.writes += 1
        log.info("fleet: updated %s %s/%s", kind.kind, meta["namespace"], meta["name"])
        return "updated", current

    async def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        try:
            gone = await self.client.delete(kind.path(namespace, name))
        except NotFound:
            return False
        if gone:
            self.writes += 1
            log.info("fleet: deleted %s %s/%s", kind.kind, namespace, name)
        return gone

    async def prune(self, keep: Iterable[tuple[str, str, str]], controller_name: str) -> int:
        """Delete this controller's fleet objects (by label and annotation) whose (kind, namespace,
        name) is not in ``keep``; another controller's are left alone."""
        wanted = set(keep)
        deleted = 0
        for kind in FLEET_KINDS:
            try:
                listed = await self.client.list(kind.path(), label_selector=FLEET_SELECTOR)
            except NotFound:
                continue
            for item in listed.get("items") or ():
                meta = item.get("metadata") or {}
                key = (kind.kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
                ours = (meta.get("annotations") or {}).get(CONTROLLER_ANNOTATION) == controller_name
                if ours and GATEWAY_NAME_LABEL in (meta.get("labels") or {}) and key not in wanted:
                    deleted += await self.delete(kind, key[1], key[2])
        return deleted
