"""Is a model server up? ``GET /health`` (vLLM, SGLang), else ``GET /v1/models`` (any OpenAI server)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from infergate.serve.spec import EndpointSpec
from infergate.util.tls import default_verify_context


@dataclass(frozen=True)
class EndpointHealth:
    endpoint: EndpointSpec
    healthy: bool
    detail: str  # what answered, or why not
    models: tuple[str, ...] = ()

    def line(self) -> str:
        mark = "healthy  " if self.healthy else "UNHEALTHY"
        models = f" models: {', '.join(self.models)}" if self.models else ""
        return f"  {mark} {self.endpoint.url} ({self.endpoint.hostport}): {self.detail}{models}"


async def _models(client: httpx.AsyncClient, base: str) -> tuple[int, tuple[str, ...]]:
    response = await client.get(f"{base}/v1/models")
    names: tuple[str, ...] = ()
    if response.status_code == 200:
        try:
            data = response.json().get("data") or []
            names = tuple(str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id"))
        except ValueError:
            names = ()
    return response.status_code, names


async def check_endpoint(endpoint: EndpointSpec, timeout: float = 3.0) -> EndpointHealth:
    """One bounded probe (``timeout`` per request)."""
    base = endpoint.base_url
    async with httpx.AsyncClient(verify=default_verify_context(), timeout=timeout) as client:
        try:
            health = await client.get(f"{base}/health")
        except httpx.HTTPError as exc:
            return EndpointHealth(endpoint, False, f"not reachable ({type(exc).__name__}: {exc or 'no answer'})")
        try:
            status, models = await _models(client, base)
        except httpx.HTTPError:
            status, models = 0, ()
    if health.status_code == 200:
        return EndpointHealth(endpoint, True, "GET /health 200", models)
    if status == 200:
        return EndpointHealth(endpoint, True, f"GET /v1/models 200 (GET /health {health.status_code})", models)
    return EndpointHealth(endpoint, False, f"GET /health {health.status_code}, GET /v1/models {status or 'failed'}")


async def check_all(endpoints: list[EndpointSpec], timeout: float = 3.0) -> list[EndpointHealth]:
    return list(await asyncio.gather(*(check_endpoint(e, timeout) for e in endpoints)))
