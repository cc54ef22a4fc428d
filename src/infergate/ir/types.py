"""The IR's types: what one Envoy must serve, in data-plane terms.

It says *what* the data plane must do, in data-plane terms, with every Kubernetes reference
already resolved: listeners with their routes, weighted backends, and pools with their
endpoints and endpoint picker.

All types are frozen dataclasses: an IR value is a snapshot and can be compared and hashed.
Names (``key``) are stable across snapshots, so a change of weights does not rename
clusters and Envoy can update in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FailureMode = Literal["FailOpen", "FailClose"]
PathMatchType = Literal["Exact", "PathPrefix", "RegularExpression"]
HeaderMatchType = Literal["Exact", "RegularExpression"]


@dataclass(frozen=True)
class Endpoint:
    """An address the data plane can connect to (a pod IP and port, or a Service IP)."""

    address: str
    port: int


@dataclass(frozen=True)
class EndpointPicker:
    """The EPP a pool's requests consult over ext_proc (resolved endpointPickerRef / extensionRef)."""

    key: str  # stable cluster name, e.g. "epp/default/vllm-llama3-8b-instruct-epp/9002"
    endpoints: tuple[Endpoint, ...]  # EPP replicas; empty = unresolvable (then failure_mode applies)
    failure_mode: FailureMode = "FailClose"


@dataclass(frozen=True)
class Pool:
    """An InferencePool of either API generation."""

    key: str  # stable cluster name, e.g. "pool/inference.networking.k8s.io/default/vllm-ga"
    group: str  # "inference.networking.k8s.io" or "inference.networking.x-k8s.io"
    namespace: str
    name: str
    target_ports: tuple[int, ...]
    endpoints: tuple[Endpoint, ...]  # ready pods matching the selector x target ports
    # None: no endpointPickerRef (GIE v1.6+): the gateway balances the pool itself (round robin)
    picker: EndpointPicker | None
    app_protocol: Literal["http", "kubernetes.io/h2c"] = "http"  # GIE v1.4+ spec.appProtocol (h2c: HTTP/2 to pods)


@dataclass(frozen=True)
class Service:
    """A plain Kubernetes Service used as a backendRef."""

    key: str  # e.g. "service/default/echo/8080"
    namespace: str
    name: str
    port: int
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True)
class HeaderValue:
    name: str
    value: str


@dataclass(frozen=True)
class HeaderModifier:
    set: tuple[HeaderValue, ...] = ()
    add: tuple[HeaderValue, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Backend:
    """One weighted backend of a route rule.

    ``kind`` says what receives the traffic. An ``invalid`` backend (missing pool, wrong group,
    missing port, not permitted by a ReferenceGrant) still takes its share of the weight and
    answers ``invalid_status`` for it, so only that share fails (Gateway API semantics).

    ``request_headers``/``response_headers`` are the backendRef's own header filters
    (``HTTPBackendRef.filters``); they apply only to the requests sent to this backend, after
    the rule's. Request headers are set before the pool's EPP is consulted, so the EPP sees them
    (e.g. ``x-gateway-model-name-rewrite`` per weighted backendRef). Two backends may name the
    same target with different filters and weights.
    """

    kind: Literal["pool", "service", "invalid"]
    weight: int
    target: str = ""  # Pool.key or Service.key; "" when invalid
    invalid_status: int = 500
    request_headers: HeaderModifier = HeaderModifier()
    response_headers: HeaderModifier = HeaderModifier()


@dataclass(frozen=True)
class HeaderMatch:
    name: str
    value: str
    type: HeaderMatchType = "Exact"


@dataclass(frozen=True)
class QueryParamMatch:
    name: str
    value: str
    type: HeaderMatchType = "Exact"


@dataclass(frozen=True)
class RouteMatch:
    path_type: PathMatchType = "PathPrefix"
    path: str = "/"
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryParamMatch, ...] = ()
    method: str | None = None


@dataclass(frozen=True)
class Redirect:
    scheme: str | None = None
    hostname: str | None = None
    path: str | None = None  # full path replacement
    prefix_path: str | None = None  # prefix replacement
    port: int | None = None
    status_code: int = 302


@dataclass(frozen=True)
class URLRewrite:
    hostname: str | None = None
    path: str | None = None  # full path replacement
    prefix_path: str | None = None  # prefix replacement


@dataclass(frozen=True)
class Route:
    """One (rule, match) pair of an HTTPRoute, attached to one listener.

    Routes of a listener are listed in Gateway API precedence order (the translator sorts
    them); the data plane keeps that order.
    """

    key: str  # e.g. "httproute/default/llm-route/rule/0/match/0"
    match: RouteMatch
    backends: tuple[Backend, ...]
    # The rule's RequestHeaderModifier: applied after body-based routing and before the EPP is
    # consulted, so the EPP sees it (x-gateway-inference-objective, x-gateway-model-name-rewrite).
    request_headers: HeaderModifier = HeaderModifier()
    response_headers: HeaderModifier = HeaderModifier()
    redirect: Redirect | None = None
    url_rewrite: URLRewrite | None = None
    timeout_seconds: float | None = None  # HTTPRoute rule timeouts.request; None = no timeout
    backend_timeout_seconds: float | None = None  # timeouts.backendRequest
    direct_status: int | None = None  # answer with this status without a backend (e.g. no valid backendRefs)


@dataclass(frozen=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]  # ("*",) when the listener and route have no hostnames
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class Certificate:
    """A TLS certificate chain and its private key (PEM), from a ``kubernetes.io/tls`` Secret.

    ``key`` names the Secret, not its content ("secret/<namespace>/<name>"): a rotated Secret
    keeps its key, so the data plane swaps the material without touching the listener.
    """

    key: str
    certificate_chain: str  # PEM
    private_key: str = field(repr=False)  # PEM; never in a repr (logs)


@dataclass(frozen=True)
class TLSFilterChain:
    """TLS termination for one HTTPS Gateway listener: the SNI names it answers and its certificates.

    ``server_names`` empty = any SNI (a listener without hostname); a wildcard hostname
    ("*.example.com") matches one or more labels as Envoy's ``server_names`` do.
    """

    name: str  # e.g. "gateway/default/inference-gateway/https"
    server_names: tuple[str, ...]
    certificates: tuple[str, ...]  # Certificate.key values


@dataclass(frozen=True)
class Listener:
    """One (Gateway, port): plain HTTP, or HTTPS when ``tls`` has filter chains (one per
    HTTPS Gateway listener, chosen by SNI); several Gateways may each have their own address."""

    key: str  # e.g. "gateway/default/inference-gateway/http"
    gateway_namespace: str
    gateway_name: str
    address: str  # bind address, e.g. 127.0.2.1 on the embedded default, 0.0.0.0 in a cluster
    port: int
    virtual_hosts: tuple[VirtualHost, ...]
    body_based_routing: bool = True  # copy the body's "model" into X-Gateway-Model-Name before routing
    tls: tuple[TLSFilterChain, ...] = ()  # empty = plain HTTP

    @property
    def is_tls(self) -> bool:
        return bool(self.tls)


@dataclass(frozen=True)
class DataplaneConfig:
    """The root of the IR: everything one Envoy must serve."""

    listeners: tuple[Listener, ...] = ()
    pools: tuple[Pool, ...] = ()
    services: tuple[Service, ...] = ()
    certificates: tuple[Certificate, ...] = ()  # what the listeners' TLS filter chains name

    def pool(self, key: str) -> Pool:
        for pool in self.pools:
            if pool.key == key:
                return pool
        raise KeyError(key)
