"""The asyncio Kubernetes REST client (aiohttp): get, list, create, replace, patch, delete, watch.

Resource-generic: paths come from :mod:`infergate.kube.kinds` (``kind.path(ns, name)``), so
any group works without generated models or a discovery cache. Non-2xx answers raise the
:mod:`infergate.kube.errors` class for the status; a failed connection raises
:class:`~infergate.kube.errors.ConnectionFailed`.

    async with KubeClient(load_config(kubeconfig)) as client:
        pod = await client.get(kinds.PODS.path("default", "p"))
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal

import aiohttp

from infergate.kube.config import KubeConfig, from_kubeconfig
from infergate.kube.errors import ConnectionFailed, NotFound, error_for

PatchType = Literal["merge", "strategic", "json", "apply"]
PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}
Params = Mapping[str, str]


class KubeClient:
    """An aiohttp session against one API server. Use as an async context manager (or open/close)."""

    def __init__(self, config: KubeConfig, *, request_timeout: float = 30.0) -> None:
        self.config = config
        self.request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path | str, context: str | None = None) -> KubeClient:
        return cls(from_kubeconfig(path, context))

    async def __aenter__(self) -> KubeClient:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._session is None:
            headers = {"Accept": "application/json"}
            if self.config.token:  # a rotating token is also sent per request (_headers)
                headers["Authorization"] = f"Bearer {self.config.token}"
            connector = aiohttp.TCPConnector(ssl=self.config.ssl_context(), limit=16)
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

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {}
        if self.config.token_source is not None:
            token = self.config.token_source()
            if token:
                headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def request(self, method: str, path: str, *, body: Any = None, content_type: str = "application/json",
                      params: Params | None = None) -> dict[str, Any]:
        """One request; the decoded JSON answer (``{}`` when empty)."""
        data = None
        if body is not None:
            data = body if isinstance(body, str | bytes) else json.dumps(body)
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        try:
            async with self.session.request(method, path, data=data, params=params, timeout=timeout,
                                            headers=self._headers(content_type if data is not None else None)
                                            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise _no_answer(exc, method, path, f"within {self.request_timeout:g}s") from exc
        if status >= 300:
            raise error_for(status, text, method=method, path=path)
        return json.loads(text) if text else {}

    async def get(self, path: str, *, params: Params | None = None) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path, params=params)
        except NotFound:
            return None

    async def list(self, path: str, label_selector: str | None = None, field_selector: str | None = None,
                   *, params: Params | None = None) -> dict[str, Any]:
        """The list object (``items``, ``metadata.resourceVersion``); NotFound when the resource is not served."""
        query = dict(params or {})
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        return await self.request("GET", path, params=query or None)

    async def create(self, path: str, obj: Mapping[str, Any], *, params: Params | None = None) -> dict[str, Any]:
        return await self.request("POST", path, body=obj, params=params)

    async def replace(self, path: str, obj: Mapping[str, Any], *, params: Params | None = None) -> dict[str, Any]:
        """PUT (with the object's resourceVersion: Conflict when someone wrote meanwhile)."""
        return await self.request("PUT", path, body=obj, params=params)

    async def patch(self, path: str, patch: Any, patch_type: PatchType = "merge", *,
                    params: Params | None = None) -> dict[str, Any]:
        """PATCH with a JSON merge, strategic merge, JSON (RFC 6902) or server-side apply patch."""
        return await self.request("PATCH", path, body=patch, content_type=PATCH_CONTENT_TYPES[patch_type],
                                  params=params)

    async def merge_patch(self, path: str, patch: Mapping[str, Any], *, params: Params | None = None
                          ) -> dict[str, Any]:
        return await self.patch(path, patch, "merge", params=params)

    async def apply(self, path: str, obj: Mapping[str, Any], field_manager: str, force: bool = True, *,
                    params: Params | None = None) -> dict[str, Any]:
        """Server-side apply (``path`` names the object)."""
        query = {"fieldManager": field_manager, "force": "true" if force else "false", **(params or {})}
        return await self.patch(path, obj, "apply", params=query)

    async def delete(self, path: str, *, body: Mapping[str, Any] | None = None,
                     params: Params | None = None) -> bool:
        """Delete; False when it was already gone."""
        try:
            await self.request("DELETE", path, body=body, params=params)
        except NotFound:
            return False
        return True

    async def watch(self, path: str, resource_version: str, timeout_seconds: int = 300, *,
                    params: Params | None = None) -> AsyncIterator[dict[str, Any]]:
        """Raw watch events (``{"type", "object"}``, BOOKMARK and ERROR included) from ``resource_version``
        until the server ends the stream. A non-2xx answer raises (Gone: relist)."""
        query = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(timeout_seconds), **(params or {})}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 30)
        try:
            async with self.session.get(path, params=query, timeout=timeout, headers=self._headers()) as response:
                if response.status >= 300:
                    raise error_for(response.status, await response.text(), method="WATCH", path=path)
                while True:
                    line = await response.content.readline()
                    if not line:
                        return
                    line = line.strip()
                    if line:
                        yield json.loads(line)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise _no_answer(exc, "WATCH", path, f"within {timeout_seconds + 30}s") from exc


def _no_answer(exc: Exception, method: str, path: str, waited: str) -> ConnectionFailed:
    """The call failed without an answer; a timeout's own text is empty: "no answer WAITED"."""
    text = str(exc) or (f"no answer {waited}" if isinstance(exc, TimeoutError) else type(exc).__name__)
    return ConnectionFailed(0, text, method=method, path=path)
