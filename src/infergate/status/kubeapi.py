"""The Kubernetes API for ``status``: lists through ``infergate.kube`` (the one client layer).

Plain GETs of list paths through the blocking facade of the async client. A kind whose API is
not served (a CRD not installed: 404) lists as empty.
"""

from __future__ import annotations

from typing import Any

from infergate.kube.config import load_config
from infergate.kube.errors import KubeError, NotFound
from infergate.kube.sync import BlockingKubeClient
from infergate.status.sources import ReaderError

PLURALS: dict[tuple[str, str], tuple[str, str]] = {
    ("gateway.networking.k8s.io", "Gateway"): ("v1", "gateways"),
    ("gateway.networking.k8s.io", "HTTPRoute"): ("v1", "httproutes"),
    ("inference.networking.k8s.io", "InferencePool"): ("v1", "inferencepools"),
    ("inference.networking.x-k8s.io", "InferencePool"): ("v1alpha2", "inferencepools"),
    ("inference.networking.x-k8s.io", "InferenceObjective"): ("v1alpha2", "inferenceobjectives"),
    ("inference.networking.x-k8s.io", "InferenceModel"): ("v1alpha2", "inferencemodels"),
    ("", "Service"): ("v1", "services"),
    ("", "Pod"): ("v1", "pods"),
}


class KubeReader:
    def __init__(self, kubeconfig: str | None = None, context: str | None = None,
                 namespace: str | None = None, timeout: float = 10.0) -> None:
        try:
            config = load_config(kubeconfig, context)
        except KubeError as exc:
            raise ReaderError(str(exc)) from exc  # "cannot load kubeconfig PATH: why"
        self._client = BlockingKubeClient(config, request_timeout=timeout, name="status-kube")
        self.namespace = namespace
        self.timeout = timeout
        self.description = f"Kubernetes API {config.server}" + (f" (namespace {namespace})" if namespace else "")

    def _path(self, group: str, kind: str) -> str:
        version, plural = PLURALS[(group, kind)]
        prefix = f"/api/{version}" if group == "" else f"/apis/{group}/{version}"
        return f"{prefix}/namespaces/{self.namespace}/{plural}" if self.namespace else f"{prefix}/{plural}"

    def list_objects(self, group: str, kind: str) -> list[dict[str, Any]]:
        path = self._path(group, kind)
        try:
            data = self._client.call(lambda c: c.list(path))
        except NotFound:  # the kind is not served (its CRD is not installed)
            return []
        except KubeError as exc:
            raise ReaderError(str(exc) if exc.path else f"GET {path}: {exc}") from exc  # its text names the call
        items: list[dict[str, Any]] = data.get("items") or []
        version, _ = PLURALS[(group, kind)]
        for item in items:  # list items carry no apiVersion/kind
            item.setdefault("apiVersion", f"{group}/{version}" if group else version)
            item.setdefault("kind", kind)
        return items

    def close(self) -> None:
        self._client.close()
