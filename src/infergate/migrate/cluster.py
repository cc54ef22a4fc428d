"""Cluster access for the migration: the official ``kubernetes`` client, resource-generic.

:class:`KubeCluster` talks to any Kubernetes API (a real cluster through a kubeconfig and
context, or ``infergate apiserver`` / ``infergate up``) with the client's configured
``ApiClient`` (authentication, TLS, proxies) and plain REST paths, so that it can read and
write any group without generated models and without a discovery cache that goes stale when
the migration installs or deletes CRDs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from infergate.migrate.resources import CRDS, Obj, Resource

FIELD_MANAGER = "infergate-migrate"


class ClusterError(Exception):
    """An API request failed; ``status`` is the HTTP status (0 when no response)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Cluster(Protocol):
    """What the migration needs from a Kubernetes API."""

    def served(self, resource: Resource) -> bool: ...
    def list(self, resource: Resource, namespace: str | None = None) -> list[Obj]: ...
    def get(self, resource: Resource, namespace: str | None, name: str) -> Obj | None: ...
    def apply(self, resource: Resource, obj: Obj, *, dry_run: bool = False) -> Obj: ...
    def replace(self, resource: Resource, obj: Obj, *, dry_run: bool = False) -> Obj: ...
    def merge_patch(
        self, resource: Resource, namespace: str | None, name: str, patch: Obj, *, dry_run: bool = False
    ) -> Obj: ...
    def delete(self, resource: Resource, namespace: str | None, name: str, *, dry_run: bool = False) -> bool: ...


@dataclass(frozen=True)
class ClusterTarget:
    """Where the cluster is: a kubeconfig file (None: $KUBECONFIG or ~/.kube/config) and a context."""

    kubeconfig: str | None = None
    context: str | None = None


class KubeCluster:
    """:class:`Cluster` on the ``kubernetes`` client's ``ApiClient``."""

    def __init__(self, api_client: Any) -> None:
        self._api = api_client

    @classmethod
    def connect(cls, target: ClusterTarget) -> KubeCluster:
        from kubernetes import config

        try:
            api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=target.kubeconfig, context=target.context
            )
        except Exception as exc:  # the client raises ConfigException, FileNotFoundError, ...
            raise ClusterError(0, f"cannot load kubeconfig {target.kubeconfig or '(default)'}: {exc}") from exc
        return cls(api_client)

    def close(self) -> None:
        self._api.close()

    # -- low level ---------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        method_, url, header_params, _, _ = self._api.param_serialize(
            method=method, resource_path=path, query_params=query or [], header_params=headers,
            auth_settings=["BearerToken"],
        )
        # The REST client JSON-encodes objects for JSON content types; other types go as text.
        data = json.dumps(body) if body is not None and "yaml" in content_type else body
        try:
            response = self._api.call_api(method_, url, header_params=header_params, body=data,
                                          _request_timeout=30)
            raw = response.read()
        except Exception as exc:
            status = int(getattr(exc, "status", 0) or 0)
            raise ClusterError(status, f"{method} {path}: {_reason(getattr(exc, 'body', None)) or exc}") from exc
        status = int(response.status)
        if status >= 400:
            raise ClusterError(status, f"{method} {path}: {status} {_reason(raw)}")
        return json.loads(raw) if raw else None

    # -- Cluster -----------------------------------------------------------------------

    def served(self, resource: Resource) -> bool:
        """Whether the API serves ``resource`` now (asks discovery, never a cache)."""
        path = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
        try:
            doc = self._request("GET", path)
        except ClusterError as exc:
            if exc.status == 404:
                return False
            raise
        return any(r.get("name") == resource.plural for r in (doc or {}).get("resources", []))

    def list(self, resource: Resource, namespace: str | None = None) -> list[Obj]:
        try:
            doc = self._request("GET", resource.path(namespace))
        except ClusterError as exc:
            if exc.status == 404:  # the CRD is not installed: nothing of it exists
                return []
            raise
        items = (doc or {}).get("items") or []
        for item in items:  # list items carry no apiVersion/kind
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
        return list(items)

    def get(self, resource: Resource, namespace: str | None, name: str) -> Obj | None:
        try:
            obj = self._request("GET", resource.path(namespace, name))
        except ClusterError as exc:
            if exc.status == 404:
                return None
            raise
        return obj if isinstance(obj, dict) else None

    def apply(self, resource: Resource, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Server-side apply (field manager ``infergate-migrate``, forced)."""
        meta = obj.get("metadata") or {}
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        body = {k: v for k, v in obj.items() if k != "status"}
        body["metadata"] = {k: v for k, v in meta.items()
                            if k not in ("resourceVersion", "uid", "creationTimestamp", "managedFields",
                                         "generation")}
        result = self._request("PATCH", resource.path(meta.get("namespace") if resource.namespaced else None,
                                                      meta["name"]),
                               body=body, content_type="application/apply-patch+yaml", query=query)
        return dict(result or {})

    def replace(self, resource: Resource, obj: Obj, *, dry_run: bool = False) -> Obj:
        meta = obj.get("metadata") or {}
        query = [("dryRun", "All")] if dry_run else []
        result = self._request("PUT", resource.path(meta.get("namespace") if resource.namespaced else None,
                                                    meta["name"]), body=obj, query=query)
        return dict(result or {})

    def merge_patch(
        self, resource: Resource, namespace: str | None, name: str, patch: Obj, *, dry_run: bool = False
    ) -> Obj:
        query = [("dryRun", "All")] if dry_run else []
        result = self._request("PATCH", resource.path(namespace, name), body=patch,
                               content_type="application/merge-patch+json", query=query)
        return dict(result or {})

    def merge_patch_status(self, resource: Resource, namespace: str | None, name: str, patch: Obj) -> Obj:
        """Merge-patch the ``status`` subresource (what a controller writes)."""
        result = self._request("PATCH", resource.path(namespace, name) + "/status", body=patch,
                               content_type="application/merge-patch+json")
        return dict(result or {})

    def delete(self, resource: Resource, namespace: str | None, name: str, *, dry_run: bool = False) -> bool:
        """Delete; False when it was already gone. Objects with finalizers stay until they are removed."""
        query = [("dryRun", "All")] if dry_run else []
        try:
            self._request("DELETE", resource.path(namespace, name), query=query,
                          body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
        except ClusterError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def crd(self, name: str) -> Obj | None:
        return self.get(CRDS, None, name)


def _reason(raw: Any) -> str:
    if raw is None:
        return ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    try:
        doc = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(doc, dict) and doc.get("message"):
        return str(doc["message"])
    return text.strip()[:500]
