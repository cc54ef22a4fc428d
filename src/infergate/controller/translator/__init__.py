"""Gateway API + InferencePool resources -> IR + statuses, as a pure function of a snapshot.

Pipeline (Envoy Gateway style):
1. GatewayClasses: ours when ``controllerName`` matches, plus the configured extra class names.
2. Gateways of our classes: listener validation and conflicts, an address from the allocator.
3. HTTPRoutes: each is compiled once (matches, filters, timeouts, backendRefs resolved to
   pools/Services, ReferenceGrants checked), then attached to each parentRef that names one
   of our Gateways (sectionName/port, allowedRoutes, hostname intersection).
4. Pools referenced by attached routes are resolved (Ready pods x target ports, EPP Service).
5. IR: one listener per (Gateway, port), virtual hosts per hostname, routes in Gateway API
   precedence order; statuses for GatewayClasses, Gateways, HTTPRoutes and InferencePools.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from infergate.controller import conditions as c
from infergate.controller.resources import GATEWAY_GROUP, POOL_GROUPS, ObjectRef, ObservedObject
from infergate.controller.snapshot import Snapshot
from infergate.controller.translator.gateways import (
    GatewayState,
    ListenerState,
    build_gateway,
    gateway_class_status,
    gateway_status,
    our_gateway_classes,
    route_allowed,
)
from infergate.controller.translator.hostnames import covers, intersect, specificity
from infergate.controller.translator.options import (
    DEFAULT_CONTROLLER_NAME,
    TranslationResult,
    TranslatorOptions,
)
from infergate.controller.translator.pools import ResolvedPool, resolve_pool
from infergate.controller.translator.rules import CompiledRoute, compile_route
from infergate.ir import (
    Certificate,
    DataplaneConfig,
    Listener,
    Pool,
    Route,
    Service,
    TLSFilterChain,
    VirtualHost,
)

__all__ = ["DEFAULT_CONTROLLER_NAME", "TranslationResult", "TranslatorOptions", "translate"]

_PATH_RANK = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


@dataclass
class _Attachment:
    gateway: GatewayState
    listener: ListenerState
    route: CompiledRoute
    hostnames: tuple[str, ...]


def translate(snapshot: Snapshot, options: TranslatorOptions | None = None) -> TranslationResult:
    options = options or TranslatorOptions()
    statuses: dict[ObjectRef, dict[str, Any]] = {}
    class_names, owned_classes = our_gateway_classes(snapshot, options)
    for gwc in owned_classes:
        statuses[gwc.ref] = gateway_class_status(gwc, options)

    gateways: dict[ObjectRef, GatewayState] = {}
    foreign: set[ObjectRef] = set()
    for gw in snapshot.list(GATEWAY_GROUP, "Gateway"):
        if gw.spec.get("gatewayClassName") in class_names:
            gateways[gw.ref] = build_gateway(gw, options.addresses, snapshot)
        else:
            foreign.add(gw.ref)
    options.addresses.retain(gateways)
    _mark_port_conflicts(gateways)

    attachments: list[_Attachment] = []
    # pool -> gateway -> whether some route referencing the pool is accepted by that gateway
    pool_parents: dict[ObjectRef, dict[ObjectRef, bool]] = defaultdict(dict)
    for route in snapshot.list(GATEWAY_GROUP, "HTTPRoute"):
        compiled = compile_route(snapshot, route)
        parents = []
        for ref in route.spec.get("parentRefs") or ():
            gw_ref = ObjectRef(ref.get("group") or GATEWAY_GROUP, ref.get("kind") or "Gateway",
                               ref.get("namespace") or route.namespace, str(ref.get("name") or ""))
            state = gateways.get(gw_ref)
            if state is None:
                continue  # not a Gateway of ours: another controller writes that status
            found, accepted = _attach(snapshot, state, compiled, ref, attachments)
            for pool in compiled.pools:
                pool_parents[pool][gw_ref] = pool_parents[pool].get(gw_ref, False) or accepted
            parents.append(_route_parent_status(route, ref, gw_ref, found, compiled, options))
        statuses[route.ref] = {"parents": parents}

    resolved_pools: dict[ObjectRef, ResolvedPool] = {}
    for group in POOL_GROUPS:
        for pool_resource in snapshot.list(group, "InferencePool"):
            resolved = resolve_pool(snapshot, pool_resource)
            resolved_pools[pool_resource.ref] = resolved
            statuses[pool_resource.ref] = _pool_status(
                pool_resource, resolved, pool_parents.get(pool_resource.ref, {}), options)

    for state in gateways.values():
        statuses[state.ref] = gateway_status(state, options)

    ir = _build_ir(gateways, attachments, resolved_pools, options)
    return TranslationResult(ir=ir, statuses=statuses, foreign_gateways=frozenset(foreign),
                             warnings=tuple(f"ignored {name}: kind not read by the gateway" for name in snapshot.ignored))


def _mark_port_conflicts(gateways: dict[ObjectRef, GatewayState]) -> None:
    """Two Gateways bound to one address (cluster mode: 0.0.0.0) cannot share a port: the
    oldest Gateway keeps it (then namespace/name order), the other's listener is not accepted."""
    owners: dict[tuple[str, int], ObjectRef] = {}
    ordered = sorted(gateways.values(), key=lambda g: (g.resource.creation_timestamp, g.ref))
    for state in ordered:
        if state.assignment is None:
            continue
        for listener in state.listeners:
            key = (state.assignment.bind_address, listener.port)
            owner = owners.setdefault(key, state.ref)
            if owner != state.ref:
                listener.accepted = (c.FALSE, c.REASON_PORT_UNAVAILABLE,
                                     f"Port {listener.port} on {key[0]} is used by Gateway {owner.namespace}/{owner.name}")


def _attach(snapshot: Snapshot, state: GatewayState, route: CompiledRoute, ref: Any,
            attachments: list[_Attachment]) -> tuple[tuple[str, str, str], bool]:
    """Attach ``route`` to the listeners ``ref`` selects; returns the Accepted condition parts."""
    section, port = ref.get("sectionName"), ref.get("port")
    candidates = [
        listener for listener in state.listeners
        if (section is None or listener.name == section) and (port is None or listener.port == port)
    ]
    if not candidates:
        what = " and ".join(filter(None, [f"sectionName {section!r}" if section else "",
                                          f"port {port}" if port else ""]))
        return (c.FALSE, c.REASON_NO_MATCHING_PARENT, f"No listener of Gateway {state.ref.namespace}/"
                f"{state.ref.name} matches {what or 'the parentRef'}"), False
    if state.address_error is not None:
        return (c.FALSE, c.REASON_NOT_ALLOWED_BY_LISTENERS, "The Gateway is not accepted"), False
    allowed = [listener for listener in candidates
               if listener.usable and route_allowed(listener, route.resource, state.resource, snapshot)]
    if not allowed:
        return (c.FALSE, c.REASON_NOT_ALLOWED_BY_LISTENERS,
                "No listener allows this route (allowedRoutes namespaces/kinds, or the listener is invalid)"), False
    matched = [(listener, intersect(listener.hostname, route.hostnames)) for listener in allowed]
    matched = [(listener, hosts) for listener, hosts in matched if hosts]
    if not matched:
        return (c.FALSE, c.REASON_NO_MATCHING_LISTENER_HOSTNAME,
                "No hostname of the route matches a listener hostname"), False
    if route.unsupported is not None:
        return (c.FALSE, c.REASON_UNSUPPORTED_VALUE, route.unsupported), False
    for listener, hosts in matched:
        listener.attached_routes.add(route.resource.ref)
        attachments.append(_Attachment(state, listener, route, hosts))
    return (c.TRUE, c.REASON_ACCEPTED, "Route is accepted"), True


def _route_parent_status(route: ObservedObject, ref: Any, gw_ref: ObjectRef, accepted: tuple[str, str, str],
                         compiled: CompiledRoute, options: TranslatorOptions) -> dict[str, Any]:
    parent_ref: dict[str, Any] = {"group": gw_ref.group, "kind": gw_ref.kind,
                                  "namespace": gw_ref.namespace, "name": gw_ref.name}
    if ref.get("sectionName"):
        parent_ref["sectionName"] = ref["sectionName"]
    if ref.get("port"):
        parent_ref["port"] = ref["port"]
    if compiled.issues:
        first = compiled.issues[0]
        message = "; ".join(issue.message for issue in compiled.issues)
        resolved = (c.FALSE, first.reason, message)
    else:
        resolved = (c.TRUE, c.REASON_RESOLVED_REFS, "All references are resolved")
    gen, now = route.generation, options.now
    return {
        "parentRef": parent_ref,
        "controllerName": options.controller_name,
        "conditions": [c.condition(c.ACCEPTED, *accepted, gen, now),
                       c.condition(c.RESOLVED_REFS, *resolved, gen, now)],
    }


def _pool_status(pool: ObservedObject, resolved: ResolvedPool, parents: dict[ObjectRef, bool],
                 options: TranslatorOptions) -> dict[str, Any]:
    gen, now = pool.generation, options.now
    entries = []
    for gw_ref, accepted in sorted(parents.items()):
        if resolved.pool.picker is None:  # GIE v1.6: no endpointPickerRef
            refs = (c.TRUE, c.REASON_RESOLVED_REFS,
                    "No endpointPickerRef: the gateway balances the pool's ready endpoints itself (round robin)")
        elif resolved.picker_error is None:
            refs = (c.TRUE, c.REASON_RESOLVED_REFS, "The endpoint picker reference is resolved")
        else:
            refs = (c.FALSE, c.REASON_INVALID_EXTENSION_REF, resolved.picker_error)
        entries.append({
            "parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": gw_ref.namespace,
                          "name": gw_ref.name},
            "conditions": [
                c.condition(c.ACCEPTED, c.TRUE, c.REASON_ACCEPTED, "Referenced by an accepted HTTPRoute", gen, now)
                if accepted else
                c.condition(c.ACCEPTED, c.FALSE, c.REASON_HTTPROUTE_NOT_ACCEPTED,
                            "Referenced only by HTTPRoutes this Gateway does not accept", gen, now),
                c.condition(c.RESOLVED_REFS, *refs, gen, now),
            ],
        })
    key = "parents" if pool.group == "inference.networking.k8s.io" else "parent"
    return {key: entries}


def _route_sort_key(att: _Attachment, hostname: str, rule_index: int, match_index: int,
                    route: Route) -> tuple[Any, ...]:
    m = route.match
    host_specificity = specificity(hostname)
    return (
        -host_specificity[0], -host_specificity[1],
        _PATH_RANK.get(m.path_type, 3), -len(m.path),
        0 if m.method else 1, -len(m.headers), -len(m.query_params),
        att.route.resource.creation_timestamp, att.route.resource.namespace, att.route.resource.name,
        rule_index, match_index,
    )


def _ir_routes(att: _Attachment) -> list[tuple[int, int, Route]]:
    res = att.route.resource
    routes = []
    for rule in att.route.rules:
        for j, match in enumerate(rule.matches):
            routes.append((rule.index, j, Route(
                key=f"httproute/{res.namespace}/{res.name}/rule/{rule.index}/match/{j}",
                match=match,
                backends=rule.backends if rule.redirect is None and rule.direct_status is None else (),
                request_headers=rule.request_headers,
                response_headers=rule.response_headers,
                redirect=rule.redirect,
                url_rewrite=rule.url_rewrite,
                timeout_seconds=rule.timeout_seconds,
                backend_timeout_seconds=rule.backend_timeout_seconds,
                direct_status=rule.direct_status,
            )))
    return routes


def _owning_listener(group: list[ListenerState], domain: str) -> ListenerState | None:
    """The listener that serves requests for ``domain``: the most specific hostname covering it."""
    covering = [lst for lst in group if lst.hostname is None or covers(lst.hostname, domain)]
    if not covering:
        return None
    return max(covering, key=lambda lst: specificity(lst.hostname or "*"))


def _virtual_host(state: GatewayState, port: int, group: list[ListenerState], atts: list[_Attachment],
                  domain: str) -> VirtualHost | None:
    """The routes of the listener owning ``domain``, in Gateway API precedence order; None when
    there are none and an empty virtual host would shadow nothing."""
    owner = _owning_listener(group, domain)
    keyed = []
    seen: set[ObjectRef] = set()
    for att in atts:
        if att.listener is not owner or att.route.resource.ref in seen:
            continue
        hostname = next((h for h in att.hostnames if covers(h, domain)), None)
        if hostname is None:
            continue
        seen.add(att.route.resource.ref)
        for i, j, route in _ir_routes(att):
            keyed.append((_route_sort_key(att, hostname, i, j, route), route))
    if not keyed and (domain == "*" or len(group) == 1):
        # An empty virtual host only matters to shadow a less specific listener.
        return None
    keyed.sort(key=lambda item: item[0])
    return VirtualHost(name=f"{state.ref.namespace}/{state.ref.name}/{port}/{domain}",
                       domains=(domain,), routes=tuple(route for _, route in keyed))


def _build_ir(gateways: dict[ObjectRef, GatewayState], attachments: list[_Attachment],
              resolved_pools: dict[ObjectRef, ResolvedPool], options: TranslatorOptions) -> DataplaneConfig:
    """One IR listener per (accepted Gateway, port), with the pools and Services its routes use."""
    listeners: list[Listener] = []
    pools: dict[str, Pool] = {}
    services: dict[str, Service] = {}
    certificates: dict[str, Certificate] = {}
    for state in gateways.values():
        if not state.accepted or state.assignment is None:
            continue
        by_port: dict[int, list[ListenerState]] = defaultdict(list)
        for listener in state.listeners:
            if listener.programmable:
                by_port[listener.port].append(listener)
        for port, group in sorted(by_port.items()):
            names = {listener.name for listener in group}
            atts = [a for a in attachments if a.gateway is state and a.listener.name in names]
            domains = sorted({h for a in atts for h in a.hostnames}
                             | {listener.hostname or "*" for listener in group},
                             key=lambda h: (specificity(h), h), reverse=True)
            vhosts = [vhost for domain in domains
                      if (vhost := _virtual_host(state, port, group, atts, domain)) is not None]
            for att in atts:
                for pool_ref in att.route.pools:
                    resolved = resolved_pools[pool_ref]
                    pools[resolved.pool.key] = resolved.pool
                services.update(att.route.services)
            tls = []
            for listener in group:
                if listener.is_tls:
                    certificates.update((cert.key, cert) for cert in listener.certificates)
                    tls.append(TLSFilterChain(
                        name=f"gateway/{state.ref.namespace}/{state.ref.name}/{listener.name}",
                        server_names=(listener.hostname,) if listener.hostname else (),
                        certificates=tuple(cert.key for cert in listener.certificates),
                    ))
            listeners.append(Listener(
                key=f"gateway/{state.ref.namespace}/{state.ref.name}/{group[0].name}",
                gateway_namespace=state.ref.namespace,
                gateway_name=state.ref.name,
                address=state.assignment.bind_address,
                port=port,
                virtual_hosts=tuple(vhosts),
                body_based_routing=options.body_based_routing,
                tls=tuple(tls),
            ))
    return DataplaneConfig(
        listeners=tuple(listeners),
        pools=tuple(pools[k] for k in sorted(pools)),
        services=tuple(services[k] for k in sorted(services)),
        certificates=tuple(certificates[k] for k in sorted(certificates)),
    )
