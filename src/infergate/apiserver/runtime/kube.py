"""A small asyncio Kubernetes API client (aiohttp) for the local runtime and `infergate up`.

Reads a kubeconfig with a bearer token and CA data (what ``infergate apiserver`` writes), or
is given the URL, token and CA directly. Only what the runtime needs: get, list, watch,
create, JSON merge patch (also on ``/status``), server-side apply and delete.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml


class KubeError(Exception):
    """A non-2xx answer from the API server (``status`` is the HTTP code)."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        message = body
        try:
            message = str(json.loads(body).get("message", body))
        except (ValueError, AttributeError):
            pass
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class KubeConfig:
    server: str
    token: str
    ca_pem: bytes | None = None

    @classmethod
    def load(cls, path: Path | str) -> KubeConfig:
        """The current context of a kubeconfig that uses a token (and optionally CA data)."""
        doc = yaml.safe_load(Path(path).read_text())
        current = doc.get("current-context")
        contexts = {c["name"]: c["context"] for c in doc.get("contexts") or []}
        context = contexts.get(current) or next(iter(contexts.values()), None)
        if context is None:
            raise ValueError(f"{path}: no context")
        clusters = {c["name"]: c["cluster"] for c in doc.get("clusters") or []}
        users = {u["name"]: u["user"] for u in doc.get("users") or []}
        cluster, user = clusters[context["cluster"]], users.get(context.get("user", ""), {})
        ca = cluster.get("certificate-authority-data")
        ca_pem = base64.b64decode(ca) if ca else None
        if ca_pem is None and cluster.get("certificate-authority"):
            ca_pem = Path(cluster["certificate-authority"]).read_bytes()
        return cls(server=str(cluster["server"]).rstrip("/"), token=str(user.get("token", "")), ca_pem=ca_pem)


def resource_path(api_version: str, plural: str, namespace: str | None = None, name: str | None = None,
                  subresource: str | None = None) -> str:
    """``/api/v1/namespaces/NS/pods/NAME/status`` and the like."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts = [base]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


class KubeClient:
    """An aiohttp session against one API server. Use as an async context manager."""

    def __init__(self, config: KubeConfig, *, request_timeout: float = 30.0) -> None:
        self.config = config
        self.request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path | str) -> KubeClient:
        return cls(KubeConfig.load(path))

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.config.server.startswith("https"):
            return False
        context = ssl.create_default_context()
        if self.config.ca_pem:
            context.load_verify_locations(cadata=self.config.ca_pem.decode())
        return context

    async def __aenter__(self) -> KubeClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._session is None:
            headers = {"Accept": "application/json"}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            connector = aiohttp.TCPConnector(ssl=self._ssl(), limit=16)
            self._session = aiohttp.ClientSession(self.config.server, headers=headers, connector=connector)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("KubeClient is not open")
        return self._session

    async def request(self, method: str, path: str, *, body: Any = None, content_type: str = "application/json",
                      params: dict[str, str] | None = None) -> dict[str, Any]:
        data = None
        if body is not None:
            data = body if isinstance(body, str | bytes) else json.dumps(body)
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        async with self.session.request(method, path, data=data, params=params, timeout=timeout,
                                        headers={"Content-Type": content_type}) as response:
            text = await response.text()
            if response.status >= 300:
                raise KubeError(response.status, method, path, text)
            return json.loads(text) if text else {}

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, path: str, label_selector: str | None = None) -> dict[str, Any]:
        params = {"labelSelector": label_selector} if label_selector else None
        return await self.request("GET", path, params=params)

    async def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=obj)

    async def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    async def apply(self, path: str, obj: dict[str, Any], field_manager: str, force: bool = True) -> dict[str, Any]:
        """Server-side apply (``path`` names the object)."""
        params = {"fieldManager": field_manager, "force": "true" if force else "false"}
        return await self.request("PATCH", path, body=obj, content_type="application/apply-patch+yaml",
                                  params=params)

    async def delete(self, path: str) -> bool:
        """Delete; False when it was already gone."""
        try:
            await self.request("DELETE", path)
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def watch(self, path: str, resource_version: str, timeout_seconds: int = 300) -> AsyncIterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}``) from ``resource_version`` until the server ends the stream.

        An ``ERROR`` event (e.g. 410 Expired) is yielded as is; the caller relists.
        """
        params = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(timeout_seconds)}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 30)
        async with self.session.get(path, params=params, timeout=timeout) as response:
            if response.status >= 300:
                raise KubeError(response.status, "WATCH", path, await response.text())
            while True:
                line = await response.content.readline()
                if not line:
                    return
                line = line.strip()
                if line:
                    yield json.loads(line)


async def wait_for(predicate: Any, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll an async predicate until it returns a truthy value (returned) or ``timeout`` passes."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)
