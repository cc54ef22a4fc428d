"""What ``infergate serve`` serves: pools of endpoints, from ``--endpoint`` URLs or ``--pool`` files.

``--endpoint http://HOST:PORT`` (repeatable) makes one pool named after ``--pool-name``; the
host is resolved to an IP address once, at start (Envoy sends to the address the EPP picks).
``--pool FILE`` (repeatable) is the EPP's static pool format (``infergate.epp.sources.static``),
one pool per file; the EPP re-reads the file itself, and ``serve`` re-renders the gateway's
objects from it when it changes.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from infergate.epp.sources.base import SourceError
from infergate.epp.sources.static import StaticPool, load_static


class SpecError(ValueError):
    """A flag or pool file that cannot be served; the message names the flag or field."""


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    url: str  # as the user gave it (or as the simulator reported it)
    address: str  # an IP address
    port: int

    @property
    def hostport(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.hostport}"


@dataclass(frozen=True)
class PoolSpec:
    name: str
    namespace: str
    group: str  # inference.networking.k8s.io (GA) or inference.networking.x-k8s.io (preview)
    endpoints: tuple[EndpointSpec, ...]
    models: tuple[str, ...]  # body "model" names routed to this pool (empty: everything)
    source_file: Path | None = None  # --pool FILE (None: generated from --endpoint)


def _resolve(host: str, flag_value: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise SpecError(f"--endpoint {flag_value!r}: cannot resolve host {host!r}: {exc}") from None
    return str(infos[0][4][0])


def parse_endpoint_url(value: str, index: int) -> EndpointSpec:
    """``http://HOST:PORT`` (a trailing ``/`` or ``/v1`` is allowed) -> an endpoint; ``SpecError`` if not."""
    hint = "expected http://HOST:PORT, e.g. http://127.0.0.1:8000"
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError as exc:
        raise SpecError(f"--endpoint {value!r}: {exc}; {hint}") from None
    if parts.scheme != "http":
        reason = ("https endpoints are not supported (the gateway speaks plain HTTP to model servers)"
                  if parts.scheme == "https" else f"scheme must be http, got {parts.scheme or 'none'!r}")
        raise SpecError(f"--endpoint {value!r}: {reason}; {hint}")
    if not parts.hostname:
        raise SpecError(f"--endpoint {value!r}: no host; {hint}")
    if port is None:
        raise SpecError(f"--endpoint {value!r}: no port; {hint}")
    if port == 0:
        raise SpecError(f"--endpoint {value!r}: port 0 is no port to send to; {hint}")
    if parts.path not in ("", "/", "/v1", "/v1/") or parts.query or parts.fragment:
        raise SpecError(f"--endpoint {value!r}: only a base URL is accepted (no path other than /v1); {hint}")
    address = _resolve(parts.hostname, value)
    return EndpointSpec(name=f"endpoint-{index}", url=value.strip(), address=address, port=port)


def endpoints_pool(urls: list[str], *, name: str, namespace: str, model: str | None) -> PoolSpec:
    endpoints = tuple(parse_endpoint_url(url, i) for i, url in enumerate(urls))
    seen: set[str] = set()
    for endpoint in endpoints:
        if endpoint.hostport in seen:
            raise SpecError(f"--endpoint {endpoint.url!r}: {endpoint.hostport} is given twice")
        seen.add(endpoint.hostport)
    return PoolSpec(name=name, namespace=namespace, group="inference.networking.k8s.io", endpoints=endpoints,
                    models=(model,) if model else ())


def pool_from_static(static: StaticPool, source: Path) -> PoolSpec:
    """A pool file's content as a ``PoolSpec``; addresses must be IP addresses (the EPP's format)."""
    endpoints: list[EndpointSpec] = []
    for i, pod in enumerate(static.pods):
        try:
            ipaddress.ip_address(pod.address)
        except ValueError:
            raise SpecError(f"{source}: endpoints[{i}].address: must be an IP address, got {pod.address!r}") from None
        if not pod.ready:
            continue
        for port in pod.ports or static.pool.target_ports:
            endpoints.append(EndpointSpec(name=pod.name, url=f"http://{pod.address}:{port}",
                                          address=pod.address, port=port))
    models = tuple(dict.fromkeys(m.model_name for m in static.models))
    return PoolSpec(name=static.pool.name, namespace=static.pool.namespace, group=static.pool.group,
                    endpoints=tuple(endpoints), models=models, source_file=source)


def load_pool_file(path: Path) -> PoolSpec:
    try:
        static = load_static(path)
    except OSError as exc:
        raise SpecError(f"--pool {path}: {exc}") from None
    except SourceError as exc:
        raise SpecError(f"--pool {exc}") from None
    return pool_from_static(static, path)


def check_pools(pools: list[PoolSpec]) -> None:
    """Pool names unique; with several pools, each names the models it serves, and no model twice."""
    keys = [(p.namespace, p.name) for p in pools]
    if len(set(keys)) != len(keys):
        raise SpecError("--pool: two pool files describe the same pool (namespace/name)")
    if len(pools) > 1:
        owner: dict[str, str] = {}
        for pool in pools:
            if not pool.models:
                where = pool.source_file or "--endpoint"
                raise SpecError(f"--pool {where}: models: required when serving several pools "
                                "(requests are routed to a pool by the body's \"model\")")
            for model in pool.models:
                if model in owner:
                    raise SpecError(f"--pool {pool.source_file}: model {model!r} is already served by pool {owner[model]}")
                owner[model] = pool.name
