"""The intermediate representation (IR) between the Gateway API translator and the xDS translator.

``infergate.controller.translator`` turns Gateway API and InferencePool resources into an IR
(``DataplaneConfig``) and statuses; ``infergate.dataplane.xds`` turns an IR into Envoy
resources. The two packages meet only here: neither imports the other.

- ``types``: the IR itself (frozen dataclasses, re-exported here);
- ``codec``: IR <-> plain dicts (golden files, the admin endpoint, dumps);
- ``validation``: what an IR must satisfy before a data plane can serve it.

This package imports nothing of infergate but ``infergate.api``.
"""

from infergate.ir.types import (
    Backend,
    Certificate,
    DataplaneConfig,
    Endpoint,
    EndpointPicker,
    FailureMode,
    HeaderMatch,
    HeaderMatchType,
    HeaderModifier,
    HeaderValue,
    Listener,
    PathMatchType,
    Pool,
    QueryParamMatch,
    Redirect,
    Route,
    RouteMatch,
    Service,
    TLSFilterChain,
    URLRewrite,
    VirtualHost,
)

__all__ = [
    "Backend",
    "Certificate",
    "DataplaneConfig",
    "Endpoint",
    "EndpointPicker",
    "FailureMode",
    "HeaderMatch",
    "HeaderMatchType",
    "HeaderModifier",
    "HeaderValue",
    "Listener",
    "PathMatchType",
    "Pool",
    "QueryParamMatch",
    "Redirect",
    "Route",
    "RouteMatch",
    "Service",
    "TLSFilterChain",
    "URLRewrite",
    "VirtualHost",
]
