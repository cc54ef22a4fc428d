"""An httpx client for an embedded API server (its CA, its admin token), for tests that talk
HTTP to it directly."""

from __future__ import annotations

import ssl

import httpx

from infergate.apiserver import ThreadedAPIServer


def api_client(handle: ThreadedAPIServer, timeout: float = 30.0) -> httpx.Client:
    """A client of ``handle``; ``timeout`` bounds each request (generous: a loaded 2-core
    machine stretches the expensive requests the hardening tests send)."""
    context = ssl.create_default_context(cafile=str(handle.ca_path))
    return httpx.Client(base_url=handle.url, verify=context, timeout=timeout,
                        headers={"Authorization": f"Bearer {handle.token}"})
