"""GatewayClasses and Gateways: which are ours, listener validation, addresses, statuses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infergate.controller import conditions as c
from infergate.controller.resources import CORE_GROUP, GATEWAY_GROUP, ObjectRef, ObservedObject
from infergate.controller.snapshot import Snapshot
from infergate.controller.translator.addresses import AddressAllocator, AddressError, Assignment
from infergate.controller.translator.certificates import resolve_certificates
from infergate.controller.translator.options import TranslatorOptions
from infergate.ir import Certificate

SUPPORTED_ROUTE_KINDS = ({"group": GATEWAY_GROUP, "kind": "HTTPRoute"},)


@dataclass
class ListenerState:
    name: str
    port: int
    protocol: str
    hostname: str | None
    allowed_routes: Mapping[str, Any]
    supported_kinds: list[dict[str, str]]
    accepted: tuple[str, str, str] = (c.TRUE, c.REASON_ACCEPTED, "Listener is accepted")
    resolved: tuple[str, str, str] = (c.TRUE, c.REASON_RESOLVED_REFS, "All references are resolved")
    conflicted: tuple[str, str, str] = (c.FALSE, c.REASON_NO_CONFLICTS, "No conflicts")
    attached_routes: set[ObjectRef] = field(default_factory=set)
    certificates: tuple[Certificate, ...] = ()  # HTTPS: the resolved tls.certificateRefs
    certificates_resolved: bool = True  # False: an HTTPS listener whose certificate is not usable

    @property
    def usable(self) -> bool:
        """Whether routes can attach (accepted, not conflicted, HTTPRoute allowed)."""
        return self.accepted[0] == c.TRUE and self.conflicted[0] == c.FALSE and bool(self.supported_kinds)

    @property
    def programmable(self) -> bool:
        """Whether the data plane serves it: usable and, for HTTPS, with a valid certificate.

        A listener whose certificate is missing or not permitted still accepts routes
        (Accepted True, as Gateway API's conformance expects) but is not Programmed."""
        return self.usable and self.certificates_resolved

    @property
    def is_tls(self) -> bool:
        return self.protocol == "HTTPS"


@dataclass
class GatewayState:
    resource: ObservedObject
    listeners: list[ListenerState]
    assignment: Assignment | None
    address_error: str | None

    @property
    def ref(self) -> ObjectRef:
        return self.resource.ref

    @property
    def accepted(self) -> bool:
        return self.address_error is None and any(listener.usable for listener in self.listeners)


def our_gateway_classes(snapshot: Snapshot, options: TranslatorOptions) -> tuple[set[str], list[ObservedObject]]:
    """(names of classes we serve, GatewayClass objects whose status we own)."""
    names = set(options.extra_gateway_classes)
    owned = []
    for gwc in snapshot.list(GATEWAY_GROUP, "GatewayClass"):
        if gwc.spec.get("controllerName") == options.controller_name:
            names.add(gwc.name)
            owned.append(gwc)
    return names, owned


def gateway_class_status(gwc: ObservedObject, options: TranslatorOptions) -> dict[str, Any]:
    return {
        "conditions": [
            c.condition(c.ACCEPTED, c.TRUE, c.REASON_ACCEPTED, f"Handled by {options.controller_name}",
                        gwc.generation, options.now),
        ]
    }


def build_gateway(gateway: ObservedObject, allocator: AddressAllocator, snapshot: Snapshot) -> GatewayState:
    listeners = [_listener(raw, gateway, snapshot, f"spec.listeners[{index}]")
                 for index, raw in enumerate(gateway.spec.get("listeners") or ())]
    _mark_conflicts(listeners)
    requested = [
        str(a.get("value")) for a in gateway.spec.get("addresses") or ()
        if (a.get("type") or "IPAddress") == "IPAddress" and a.get("value")
    ]
    unsupported = [a for a in gateway.spec.get("addresses") or () if (a.get("type") or "IPAddress") != "IPAddress"]
    previous = [str(a.get("value")) for a in gateway.status.get("addresses") or () if a.get("value")]
    assignment: Assignment | None = None
    error: str | None = None
    if unsupported:
        error = f"spec.addresses: only IPAddress addresses are supported, not {unsupported[0].get('type')!r}"
    else:
        try:
            assignment = allocator.assign(gateway.ref, requested, previous)
        except AddressError as exc:
            error = f"spec.addresses: {exc}"
    return GatewayState(gateway, listeners, assignment, error)


def _listener(raw: Mapping[str, Any], gateway: ObservedObject, snapshot: Snapshot, path: str) -> ListenerState:
    protocol = str(raw.get("protocol") or "")
    hostname = raw.get("hostname")
    allowed = raw.get("allowedRoutes") or {}
    kinds = allowed.get("kinds")
    state = ListenerState(
        name=str(raw.get("name") or ""),
        port=int(raw.get("port") or 0),
        protocol=protocol,
        hostname=str(hostname).lower() if hostname else None,
        allowed_routes=allowed,
        supported_kinds=[dict(k) for k in SUPPORTED_ROUTE_KINDS],
    )
    if kinds:
        valid = [
            {"group": GATEWAY_GROUP, "kind": "HTTPRoute"}
            for k in kinds
            if (k.get("group") if k.get("group") is not None else GATEWAY_GROUP) == GATEWAY_GROUP
            and k.get("kind") == "HTTPRoute"
        ][:1]
        state.supported_kinds = valid
        invalid = [k for k in kinds if not ((k.get("group") or GATEWAY_GROUP) == GATEWAY_GROUP and k.get("kind") == "HTTPRoute")]
        if invalid:
            names = ", ".join(f"{k.get('group') or GATEWAY_GROUP}/{k.get('kind')}" for k in invalid)
            state.resolved = (c.FALSE, c.REASON_INVALID_ROUTE_KINDS, f"Unsupported route kinds: {names}")
    if protocol == "HTTPS":
        _resolve_tls(state, raw.get("tls") or {}, gateway, snapshot, f"{path}.tls")
    elif protocol != "HTTP":
        state.accepted = (c.FALSE, c.REASON_UNSUPPORTED_PROTOCOL,
                          f"Protocol {protocol!r} is not supported (only HTTP and HTTPS)")
        state.supported_kinds = []
    if not 1 <= state.port <= 65535:
        state.accepted = (c.FALSE, c.REASON_INVALID, f"Port {state.port} is out of range")
    return state


def _resolve_tls(state: ListenerState, tls: Mapping[str, Any], gateway: ObservedObject, snapshot: Snapshot,
                 path: str) -> None:
    mode = tls.get("mode") or "Terminate"
    if mode != "Terminate":
        state.accepted = (c.FALSE, c.REASON_UNSUPPORTED_VALUE,
                          f"{path}.mode: Unsupported value: {mode!r} (HTTPS terminates TLS)")
        state.supported_kinds = []
        return
    certificates, problem = resolve_certificates(snapshot, gateway, tls.get("certificateRefs"),
                                                 f"{path}.certificateRefs")
    if problem is not None:
        state.resolved = (c.FALSE, problem.reason, problem.message)
        state.certificates_resolved = False
        return
    state.certificates = certificates


def _mark_conflicts(listeners: Sequence[ListenerState]) -> None:
    for i, a in enumerate(listeners):
        for b in listeners[i + 1:]:
            if a.port != b.port:
                continue
            if a.protocol != b.protocol:
                reason, message = c.REASON_PROTOCOL_CONFLICT, f"Listeners {a.name} and {b.name} use port {a.port} with different protocols"
            elif a.hostname == b.hostname:
                reason, message = c.REASON_HOSTNAME_CONFLICT, f"Listeners {a.name} and {b.name} use the same port and hostname"
            else:
                continue
            a.conflicted = b.conflicted = (c.TRUE, reason, message)


def route_allowed(listener: ListenerState, route: ObservedObject, gateway: ObservedObject, snapshot: Snapshot) -> bool:
    """allowedRoutes: kinds and namespaces (Same by default, All, Selector)."""
    if not any(k["kind"] == route.kind for k in listener.supported_kinds):
        return False
    namespaces = listener.allowed_routes.get("namespaces") or {}
    origin = namespaces.get("from") or "Same"
    if origin == "All":
        return True
    if origin == "Same":
        return route.namespace == gateway.namespace
    if origin == "Selector":
        namespace = snapshot.get(CORE_GROUP, "Namespace", "", route.namespace)
        labels = dict(namespace.labels) if namespace is not None else {}
        labels.setdefault("kubernetes.io/metadata.name", route.namespace)
        return label_selector_matches(namespaces.get("selector") or {}, labels)
    return False


def label_selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels AND matchExpressions); empty matches everything."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr.get("key"), expr.get("operator"), list(expr.get("values") or ())
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def gateway_status(state: GatewayState, options: TranslatorOptions) -> dict[str, Any]:
    gen, now = state.resource.generation, options.now
    listener_statuses = []
    for listener in state.listeners:
        ok = listener.programmable and state.assignment is not None and state.address_error is None
        listener_statuses.append({
            "name": listener.name,
            "supportedKinds": listener.supported_kinds,
            "attachedRoutes": len(listener.attached_routes),
            "conditions": [
                c.condition(c.ACCEPTED, *listener.accepted, gen, now),
                c.condition(c.PROGRAMMED, c.TRUE if ok else c.FALSE,
                            c.REASON_PROGRAMMED if ok else c.REASON_INVALID,
                            "Listener is programmed" if ok else "Listener is not programmed", gen, now),
                c.condition(c.RESOLVED_REFS, *listener.resolved, gen, now),
                c.condition(c.CONFLICTED, *listener.conflicted, gen, now),
            ],
        })
    invalid = [listener.name for listener in state.listeners if not listener.usable]
    accepted: tuple[str, str, str]
    if state.address_error is not None:
        accepted = (c.FALSE, c.REASON_UNSUPPORTED_ADDRESS, state.address_error)
    elif not state.listeners:
        accepted = (c.FALSE, c.REASON_LISTENERS_NOT_VALID, "The Gateway has no listeners")
    elif len(invalid) == len(state.listeners):
        accepted = (c.FALSE, c.REASON_LISTENERS_NOT_VALID, f"No valid listeners: {', '.join(invalid)}")
    elif invalid:
        accepted = (c.TRUE, c.REASON_LISTENERS_NOT_VALID, f"Some listeners are not valid: {', '.join(invalid)}")
    else:
        accepted = (c.TRUE, c.REASON_ACCEPTED, "Gateway is accepted")
    programmed: tuple[str, str, str]
    if accepted[0] == c.TRUE and state.assignment is not None:
        programmed = (c.TRUE, c.REASON_PROGRAMMED, f"Gateway listens on {state.assignment.bind_address}")
    elif state.address_error is not None:
        programmed = (c.FALSE, c.REASON_ADDRESS_NOT_ASSIGNED, state.address_error)
    else:
        programmed = (c.FALSE, c.REASON_INVALID, "Gateway is not accepted")
    status: dict[str, Any] = {}
    if programmed[0] == c.TRUE and state.assignment is not None and state.assignment.status_address:
        status["addresses"] = [{"type": "IPAddress", "value": state.assignment.status_address}]
    status["conditions"] = [
        c.condition(c.ACCEPTED, *accepted, gen, now),
        c.condition(c.PROGRAMMED, *programmed, gen, now),
    ]
    status["listeners"] = listener_statuses
    return status
