"""Cluster access for the migration: ``infergate.kube``'s client behind a synchronous facade.

:class:`KubeCluster` talks to any Kubernetes API (a real cluster through a kubeconfig and
context, or ``infergate apiserver`` / ``infergate up``) by plain REST paths, so that it can
read and write any group without generated models and without a discovery cache that goes
stale when the migration installs or deletes CRDs. Its methods block: each runs on the
cluster's own event loop (a private thread), so callers on an event loop use
``asyncio.to_thread``, and several threads may call at once.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from infergate.kube.client import KubeClient
from infergate.kube.config import KubeConfig, from_kubeconfig
from infergate.kube.errors import KubeError, NotFound
from infergate.kube.kinds import Kind
from infergate.kube.sync import BlockingKubeClient
from infergate.migrate.resources import CRDS, Obj

FIELD_MANAGER = "infergate-migrate"

# The migration's error is the Kubernetes layer's (``status`` is the HTTP status, 0 when no answer).
ClusterError = KubeError

T = TypeVar("T")


class Cluster(Protocol):
    """What the migration needs from a Kubernetes API."""

    def served(self, resource: Kind) -> bool: ...
    def list(self, resource: Kind, namespace: str | None = None) -> list[Obj]: ...
    def get(self, resource: Kind, namespace: str | None, name: str) -> Obj | None: ...
    def apply(self, resource: Kind, obj: Obj, *, dry_run: bool = False) -> Obj: ...
    def replace(self, resource: Kind, obj: Obj, *, dry_run: bool = False) -> Obj: ...
    def merge_patch(
        self, resource: Kind, namespace: str | None, name: str, patch: Obj, *, dry_run: bool = False
    ) -> Obj: ...
    def delete(self, resource: Kind, namespace: str | None, name: str, *, dry_run: bool = False) -> bool: ...


@dataclass(frozen=True)
class ClusterTarget:
    """Where the cluster is: a kubeconfig file (None: $KUBECONFIG or ~/.kube/config) and a context."""

    kubeconfig: str | None = None
    context: str | None = None


async def _the_client(client: KubeClient) -> KubeClient:
    return client


def _dry_run(dry_run: bool) -> dict[str, str] | None:
    return {"dryRun": "All"} if dry_run else None


class KubeCluster:
    """:class:`Cluster` on :class:`infergate.kube.client.KubeClient`. Call :meth:`close` when done."""

    def __init__(self, config: KubeConfig) -> None:
        self._blocking = BlockingKubeClient(config, name="migrate-cluster")
        self._client = self._blocking.call(_the_client)

    @classmethod
    def connect(cls, target: ClusterTarget) -> KubeCluster:
        return cls(from_kubeconfig(target.kubeconfig, target.context))

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        return self._blocking.run(call)

    def close(self) -> None:
        self._blocking.close()

    # -- Cluster -----------------------------------------------------------------------

    def served(self, resource: Kind) -> bool:
        """Whether the API serves ``resource`` now (asks discovery, never a cache)."""
        path = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
        doc = self._run(self._client.get(path))
        return any(r.get("name") == resource.plural for r in (doc or {}).get("resources", []))

    def list(self, resource: Kind, namespace: str | None = None) -> list[Obj]:
        try:
            doc = self._run(self._client.list(resource.path(namespace)))
        except NotFound:  # the CRD is not installed: nothing of it exists
            return []
        items = doc.get("items") or []
        for item in items:  # list items carry no apiVersion/kind
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
        return list(items)

    def get(self, resource: Kind, namespace: str | None, name: str) -> Obj | None:
        return self._run(self._client.get(resource.path(namespace, name)))

    def apply(self, resource: Kind, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Server-side apply (field manager ``infergate-migrate``, forced)."""
        meta = obj.get("metadata") or {}
        body = {k: v for k, v in obj.items() if k != "status"}
        body["metadata"] = {k: v for k, v in meta.items()
                            if k not in ("resourceVersion", "uid", "creationTimestamp", "managedFields",
                                         "generation")}
        path = resource.path(meta.get("namespace"), meta["name"])
        return self._run(self._client.apply(path, body, FIELD_MANAGER, params=_dry_run(dry_run)))

    def replace(self, resource: Kind, obj: Obj, *, dry_run: bool = False) -> Obj:
        meta = obj.get("metadata") or {}
        path = resource.path(meta.get("namespace"), meta["name"])
        return self._run(self._client.replace(path, obj, params=_dry_run(dry_run)))

    def merge_patch(
        self, resource: Kind, namespace: str | None, name: str, patch: Obj, *, dry_run: bool = False
    ) -> Obj:
        return self._run(self._client.merge_patch(resource.path(namespace, name), patch, params=_dry_run(dry_run)))

    def merge_patch_status(self, resource: Kind, namespace: str | None, name: str, patch: Obj) -> Obj:
        """Merge-patch the ``status`` subresource (what a controller writes)."""
        return self._run(self._client.merge_patch(resource.path(namespace, name, "status"), patch))

    def delete(self, resource: Kind, namespace: str | None, name: str, *, dry_run: bool = False) -> bool:
        """Delete; False when it was already gone. Objects with finalizers stay until they are removed."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        return self._run(self._client.delete(resource.path(namespace, name), body=body, params=_dry_run(dry_run)))

    def crd(self, name: str) -> Obj | None:
        return self.get(CRDS, None, name)
