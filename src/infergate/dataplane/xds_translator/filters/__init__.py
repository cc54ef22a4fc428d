"""The HTTP filter chain of a listener, one builder module per filter, in chain order:

1. ``destination_guard``: removes client-supplied ``x-gateway-destination-endpoint`` (and
   ``-subset``), otherwise a client could pick any address when the EPP is down (SSRF);
2. ``body_routing`` (when the listener has ``body_based_routing``): ``X-Gateway-Model-Name`` :=
   body ``model``, then the route cache is cleared, so HTTPRoute header matches see it;
3. ``request_headers``: the HTTPRoute rule's and the backendRef's ``RequestHeaderModifier``,
   from per-route configs, after the route is resolved and before ext_proc (the EPP sees them);
4. ``ext_proc``: the pool's EPP, chosen per weighted cluster;
5. ``served_endpoint``: on the response, the ``ip:port`` that served it into the ``envoy.lb``
   metadata ext_proc forwards to the EPP (two filters; responses cross them before ext_proc);
6. ``router``.
"""

from __future__ import annotations

from typing import Any

from infergate.dataplane.xds_translator.filters import (
    body_routing,
    destination_guard,
    ext_proc,
    request_headers,
    router,
    served_endpoint,
)
from infergate.dataplane.xds_translator.options import TranslateOptions
from infergate.ir import Listener


def http_filters(listener: Listener, opts: TranslateOptions) -> list[dict[str, Any]]:
    filters = [destination_guard.http_filter()]
    if listener.body_based_routing:
        filters.append(body_routing.http_filter())
    filters.append(request_headers.http_filter())
    filters.append(ext_proc.http_filter(opts))
    filters.append(served_endpoint.to_metadata())
    filters.append(served_endpoint.stamp())
    filters.append(router.http_filter())
    return filters
