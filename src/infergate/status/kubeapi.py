"""The Kubernetes API for ``status``: the one module that knows the client library.

Uses the official ``kubernetes`` (sync) client's ``ApiClient`` for the kubeconfig/in-cluster
configuration and plain GETs of list paths, so that moving to ``infergate.kube`` is a change
of this file only. A kind whose API is not served (a CRD not installed: 404) lists as empty.
"""

from __future__ import annotations

import json
from typing import Any

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
        from kubernetes import client, config  # the client library loads only when this reader is used

        if kubeconfig:
            self._api: Any = config.new_client_from_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        else:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException:
                config.load_kube_config(context=context)  # type: ignore[no-untyped-call]
            self._api = client.ApiClient()
        self.namespace = namespace
        self.timeout = timeout
        host = self._api.configuration.host
        self.description = f"Kubernetes API {host}" + (f" (namespace {namespace})" if namespace else "")

    def _path(self, group: str, kind: str) -> str:
        version, plural = PLURALS[(group, kind)]
        prefix = f"/api/{version}" if group == "" else f"/apis/{group}/{version}"
        return f"{prefix}/namespaces/{self.namespace}/{plural}" if self.namespace else f"{prefix}/{plural}"

    def list_objects(self, group: str, kind: str) -> list[dict[str, Any]]:
        method, url, header_params, _, _ = self._api.param_serialize(
            method="GET", resource_path=self._path(group, kind), header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"])
        response = self._api.call_api(method, url, header_params=header_params, _request_timeout=self.timeout)
        raw = response.read()
        if response.status == 404:  # the kind is not served (its CRD is not installed)
            return []
        if response.status >= 400:
            raise ReaderError(f"GET {self._path(group, kind)}: {response.status} {raw[:300]!r}")
        data = json.loads(raw)
        items: list[dict[str, Any]] = data.get("items") or []
        version, _ = PLURALS[(group, kind)]
        for item in items:  # list items carry no apiVersion/kind
            item.setdefault("apiVersion", f"{group}/{version}" if group else version)
            item.setdefault("kind", kind)
        return items

    def close(self) -> None:
        self._api.close()
