"""HTTPRoute ``RequestHeaderModifier``s, applied before ext_proc so the EPP sees them.

The listener's filter has no mutations of its own: the route's and the weighted cluster's
``typed_per_filter_config`` (``HeaderMutationPerRoute``) carry them, the most specific (the
backendRef's) last. Route-level ``request_headers_to_add`` would run in the router, after the
EPP has picked, which is too late for ``x-gateway-inference-objective`` or
``x-gateway-model-name-rewrite``.
"""

from __future__ import annotations

from typing import Any

from infergate.api import headers
from infergate.dataplane.xds_translator.common import header_value_options
from infergate.dataplane.xds_translator.type_urls import T_HEADER_MUTATION, T_HEADER_MUTATION_PER_ROUTE
from infergate.ir import HeaderModifier

# The filter's name; per-route configs use it as their key.
NAME = "infergate.request_headers"


def http_filter() -> dict[str, Any]:
    return {
        # Route and backendRef RequestHeaderModifiers, from per-route configs only. After
        # body-based routing (the route is resolved with X-Gateway-Model-Name), before
        # ext_proc (the EPP sees the headers). Most specific (the weighted cluster's) last.
        "name": NAME,
        "typed_config": {"@type": T_HEADER_MUTATION, "most_specific_header_mutations_wins": True},
    }


def per_route(modifier: HeaderModifier, where: str, warnings: list[str]) -> dict[str, Any]:
    """``typed_per_filter_config`` entry applying ``modifier`` (without the EPP's headers):
    remove, then set, then add (Envoy's own order for route headers). Empty if nothing to do."""
    modifier = _without_epp_headers(modifier, where, warnings)
    if not (modifier.set or modifier.add or modifier.remove):
        return {}
    mutations: list[dict[str, Any]] = [{"remove": name} for name in modifier.remove]
    mutations += [{"append": option} for option in header_value_options(modifier)]
    return {
        NAME: {
            "@type": T_HEADER_MUTATION_PER_ROUTE,
            "mutations": {"request_mutations": mutations},
        }
    }


def _without_epp_headers(modifier: HeaderModifier, where: str, warnings: list[str]) -> HeaderModifier:
    """Drop what a route must not touch: the EPP's destination headers (set before ext_proc,
    the EPP overwrites them anyway; removal would only be meaningful after it)."""
    owned = headers.EPP_OWNED
    dropped = sorted(
        {h.name for h in (*modifier.set, *modifier.add) if h.name.lower() in owned}
        | {name for name in modifier.remove if name.lower() in owned}
    )
    if not dropped:
        return modifier
    warnings.append(f"{where}: {', '.join(dropped)} belong to the endpoint picker; not modified by the route")
    return HeaderModifier(
        set=tuple(h for h in modifier.set if h.name.lower() not in owned),
        add=tuple(h for h in modifier.add if h.name.lower() not in owned),
        remove=tuple(name for name in modifier.remove if name.lower() not in owned),
    )
