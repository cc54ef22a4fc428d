"""``gateway.networking.k8s.io``: Gateway API v1.3.0, standard channel.

GatewayClass, Gateway and HTTPRoute are served as ``v1`` (storage) and ``v1beta1`` with the
same schema; ReferenceGrant is served only as ``v1beta1`` at v1.3.0. Every field of the
standard channel is modelled, so that the generated CRDs match upstream's.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from infergate.api.base import (
    Condition,
    GatewayController,
    Group,
    HeaderName,
    Hostname,
    Int32,
    K8sModel,
    Kind,
    LabelValue,
    Namespace,
    ObjectName,
    PortNumber,
    PreciseHostname,
    Rule,
    S,
    SectionName,
    conditions_field,
    immutable,
    pending_condition,
)
from infergate.api.core import Resource

__all__ = [
    "API_VERSION",
    "GROUP",
    "REFERENCE_GRANT_API_VERSION",
    "AllowedRoutes",
    "Gateway",
    "GatewayClass",
    "GatewayClassSpec",
    "GatewayClassStatus",
    "GatewayInfrastructure",
    "GatewaySpec",
    "GatewaySpecAddress",
    "GatewayStatus",
    "GatewayStatusAddress",
    "GatewayTLSConfig",
    "HTTPBackendRef",
    "HTTPHeader",
    "HTTPHeaderFilter",
    "HTTPHeaderMatch",
    "HTTPPathMatch",
    "HTTPPathModifier",
    "HTTPQueryParamMatch",
    "HTTPRequestMirrorFilter",
    "HTTPRequestRedirectFilter",
    "HTTPRoute",
    "HTTPRouteFilter",
    "HTTPRouteMatch",
    "HTTPRouteRule",
    "HTTPRouteSpec",
    "HTTPRouteStatus",
    "HTTPRouteTimeouts",
    "HTTPURLRewriteFilter",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Listener",
    "ListenerStatus",
    "ParentReference",
    "ReferenceGrant",
    "ReferenceGrantFrom",
    "ReferenceGrantSpec",
    "ReferenceGrantTo",
    "RouteGroupKind",
    "RouteNamespaces",
    "RouteParentStatus",
]

GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
REFERENCE_GRANT_API_VERSION = f"{GROUP}/v1beta1"
BUNDLE_VERSION = "v1.3.0"

ADDRESS_TYPE_PATTERN = (
    r"^Hostname|IPAddress|NamedAddress|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    r"\/[A-Za-z0-9\/\-._~%!$&'()*+,;=:]+$"
)
PROTOCOL_PATTERN = (
    r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    r"\/[A-Za-z0-9]+$"
)
DURATION_PATTERN = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"
_HOSTNAME_RE_CEL = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_KEY_RE_CEL = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?"
    r"[A-Za-z0-9]$"
)

# Condition types and reasons the controller writes (gateway-api apis/v1).
GATEWAY_CLASS_ACCEPTED = "Accepted"
GATEWAY_ACCEPTED = "Accepted"
GATEWAY_PROGRAMMED = "Programmed"
ROUTE_ACCEPTED = "Accepted"
ROUTE_RESOLVED_REFS = "ResolvedRefs"
REASON_BACKEND_NOT_FOUND = "BackendNotFound"
REASON_REF_NOT_PERMITTED = "RefNotPermitted"
REASON_INVALID_KIND = "InvalidKind"
REASON_NO_MATCHING_PARENT = "NoMatchingParent"
REASON_NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"


# ---------------------------------------------------------------------------------------
# Shared


class ParentReference(K8sModel):
    group: Group = GROUP
    kind: Kind = "Gateway"
    namespace: Namespace | None = None
    name: ObjectName
    section_name: SectionName | None = None
    port: PortNumber | None = None


class LabelSelectorRequirement(K8sModel):
    key: str
    operator: str
    values: Annotated[list[str] | None, S(list_type="atomic")] = None


class LabelSelector(K8sModel):
    """``metav1.LabelSelector``."""

    __k8s__: ClassVar[S] = S(map_type="atomic")

    match_expressions: Annotated[list[LabelSelectorRequirement] | None, S(list_type="atomic")] = None
    match_labels: dict[str, str] | None = None


class RouteParentStatus(K8sModel):
    parent_ref: ParentReference
    controller_name: GatewayController
    conditions: Annotated[
        list[Condition] | None, S(min_items=1, max_items=8, list_type="map", list_map_keys=("type",))
    ] = None


# ---------------------------------------------------------------------------------------
# GatewayClass


class ParametersReference(K8sModel):
    group: Group
    kind: Kind
    name: ObjectName
    namespace: Namespace | None = None


class GatewayClassSpec(K8sModel):
    controller_name: Annotated[GatewayController, S(rules=(immutable(),))]
    parameters_ref: ParametersReference | None = None
    description: Annotated[str | None, S(max_length=64)] = None


class GatewayClassStatus(K8sModel):
    conditions: Annotated[list[Condition] | None, conditions_field("Accepted")] = None


class GatewayClass(Resource):
    """GatewayClass (cluster-scoped): a class of Gateways handled by one controller."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "GatewayClass"

    spec: GatewayClassSpec
    status: Annotated[
        GatewayClassStatus | None, S(default={"conditions": [pending_condition("Accepted")]})
    ] = None


# ---------------------------------------------------------------------------------------
# Gateway


class SecretObjectReference(K8sModel):
    group: Group = ""
    kind: Kind = "Secret"
    name: ObjectName
    namespace: Namespace | None = None


class GatewayTLSConfig(K8sModel):
    __k8s__: ClassVar[S] = S(
        rules=(
            Rule(
                "self.mode == 'Terminate' ? size(self.certificateRefs) > 0 || size(self.options) > 0 : true",
                "certificateRefs or options must be specified when mode is Terminate",
            ),
        )
    )

    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificate_refs: Annotated[list[SecretObjectReference] | None, S(max_items=64)] = None
    options: Annotated[
        dict[str, Annotated[str, S(min_length=0, max_length=4096)]] | None, S(max_properties=16)
    ] = None


class RouteGroupKind(K8sModel):
    group: Group = GROUP
    kind: Kind


class RouteNamespaces(K8sModel):
    from_: Literal["All", "Selector", "Same"] = Field(default="Same", alias="from")
    selector: LabelSelector | None = None


class AllowedRoutes(K8sModel):
    namespaces: Annotated[RouteNamespaces | None, S(default={"from": "Same"})] = None
    kinds: Annotated[list[RouteGroupKind] | None, S(max_items=8)] = None


class Listener(K8sModel):
    name: SectionName
    hostname: Hostname | None = None
    port: PortNumber
    protocol: Annotated[str, S(min_length=1, max_length=255, pattern=PROTOCOL_PATTERN)]
    tls: GatewayTLSConfig | None = None
    allowed_routes: Annotated[AllowedRoutes | None, S(default={"namespaces": {"from": "Same"}})] = None


_ADDRESS_ONE_OF: list[dict[str, Any]] = [
    {
        "properties": {
            "type": {"enum": ["IPAddress"]},
            "value": {"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
        }
    },
    {"properties": {"type": {"not": {"enum": ["IPAddress"]}}}},
]
_HOSTNAME_ADDRESS_RULE = Rule(
    f'self.type == \'Hostname\' ? self.value.matches(r"""{_HOSTNAME_RE_CEL}"""): true',
    f"Hostname value must only contain valid characters (matching {_HOSTNAME_RE_CEL})",
)

AddressType = Annotated[str, S(min_length=1, max_length=253, pattern=ADDRESS_TYPE_PATTERN)]


class GatewaySpecAddress(K8sModel):
    __k8s__: ClassVar[S] = S(extra=(("oneOf", _ADDRESS_ONE_OF),), rules=(_HOSTNAME_ADDRESS_RULE,))

    type: AddressType = "IPAddress"
    value: Annotated[str | None, S(max_length=253)] = None


class GatewayStatusAddress(K8sModel):
    __k8s__: ClassVar[S] = S(extra=(("oneOf", _ADDRESS_ONE_OF),), rules=(_HOSTNAME_ADDRESS_RULE,))

    type: AddressType = "IPAddress"
    value: Annotated[str, S(min_length=1, max_length=253)]


def _key_rules(what: str) -> tuple[Rule, ...]:
    return (
        Rule(
            f'self.all(key, key.matches(r"""{_KEY_RE_CEL}"""))',
            f"{what.capitalize()} keys must be in the form of an optional DNS subdomain prefix followed by a "
            "required name segment of up to 63 characters.",
        ),
        Rule(
            'self.all(key, key.split("/")[0].size() < 253)',
            f"If specified, the {what} key's prefix must be a DNS subdomain not longer than 253 characters "
            "in total.",
        ),
    )


class LocalParametersReference(K8sModel):
    group: Group
    kind: Kind
    name: Annotated[str, S(min_length=1, max_length=253)]


class GatewayInfrastructure(K8sModel):
    labels: Annotated[dict[str, LabelValue] | None, S(max_properties=8, rules=_key_rules("label"))] = None
    annotations: Annotated[
        dict[str, Annotated[str, S(min_length=0, max_length=4096)]] | None,
        S(max_properties=8, rules=_key_rules("annotation")),
    ] = None
    parameters_ref: LocalParametersReference | None = None


_LISTENER_RULES = (
    Rule(
        "self.all(l, l.protocol in ['HTTP', 'TCP', 'UDP'] ? !has(l.tls) : true)",
        "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
    ),
    Rule(
        "self.all(l, (l.protocol == 'HTTPS' && has(l.tls)) ? (l.tls.mode == '' || l.tls.mode == 'Terminate') "
        ": true)",
        "tls mode must be Terminate for protocol HTTPS",
    ),
    Rule(
        "self.all(l, l.protocol in ['TCP', 'UDP']  ? (!has(l.hostname) || l.hostname == '') : true)",
        "hostname must not be specified for protocols ['TCP', 'UDP']",
    ),
    Rule(
        "self.all(l1, self.exists_one(l2, l1.name == l2.name))",
        "Listener name must be unique within the Gateway",
    ),
    Rule(
        "self.all(l1, self.exists_one(l2, l1.port == l2.port && l1.protocol == l2.protocol && (has(l1.hostname) "
        "&& has(l2.hostname) ? l1.hostname == l2.hostname : !has(l1.hostname) && !has(l2.hostname))))",
        "Combination of port, protocol and hostname must be unique for each listener",
    ),
)


def _unique_address_rule(address_type: str) -> Rule:
    return Rule(
        f"self.all(a1, a1.type == '{address_type}' ? self.exists_one(a2, a2.type == a1.type && "
        "a2.value == a1.value) : true )",
        f"{address_type} values must be unique",
    )


class GatewaySpec(K8sModel):
    gateway_class_name: ObjectName
    listeners: Annotated[
        list[Listener],
        S(min_items=1, max_items=64, list_type="map", list_map_keys=("name",), rules=_LISTENER_RULES),
    ]
    addresses: Annotated[
        list[GatewaySpecAddress] | None,
        S(max_items=16, rules=(_unique_address_rule("IPAddress"), _unique_address_rule("Hostname"))),
    ] = None
    infrastructure: GatewayInfrastructure | None = None


class ListenerStatus(K8sModel):
    name: SectionName
    supported_kinds: Annotated[list[RouteGroupKind], S(max_items=8)]
    attached_routes: Int32
    conditions: Annotated[list[Condition], S(max_items=8, list_type="map", list_map_keys=("type",))]


class GatewayStatus(K8sModel):
    addresses: Annotated[list[GatewayStatusAddress] | None, S(max_items=16)] = None
    conditions: Annotated[list[Condition] | None, conditions_field("Accepted", "Programmed")] = None
    listeners: Annotated[
        list[ListenerStatus] | None, S(max_items=64, list_type="map", list_map_keys=("name",))
    ] = None


class Gateway(Resource):
    """Gateway: listeners (port, protocol, hostname, TLS) that routes attach to."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "Gateway"

    spec: GatewaySpec
    status: Annotated[
        GatewayStatus | None,
        S(default={"conditions": [pending_condition("Accepted"), pending_condition("Programmed")]}),
    ] = None


# ---------------------------------------------------------------------------------------
# HTTPRoute


_SERVICE_PORT_RULE = Rule(
    "(size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true",
    "Must have port for Service reference",
)


class BackendObjectReference(K8sModel):
    __k8s__: ClassVar[S] = S(rules=(_SERVICE_PORT_RULE,))

    group: Group = ""
    kind: Kind = "Service"
    name: ObjectName
    namespace: Namespace | None = None
    port: PortNumber | None = None


class HTTPHeader(K8sModel):
    name: HeaderName
    value: Annotated[str, S(min_length=1, max_length=4096)]


HeaderList = Annotated[list[HTTPHeader] | None, S(max_items=16, list_type="map", list_map_keys=("name",))]


class HTTPHeaderFilter(K8sModel):
    set: HeaderList = None
    add: HeaderList = None
    remove: Annotated[list[str] | None, S(max_items=16, list_type="set")] = None


def _path_modifier_rules() -> tuple[Rule, ...]:
    out: list[Rule] = []
    for kind, fld in (("ReplaceFullPath", "replaceFullPath"), ("ReplacePrefixMatch", "replacePrefixMatch")):
        out.append(
            Rule(
                f"self.type == '{kind}' ? has(self.{fld}) : true",
                f"{fld} must be specified when type is set to '{kind}'",
            )
        )
        out.append(
            Rule(
                f"has(self.{fld}) ? self.type == '{kind}' : true",
                f"type must be '{kind}' when {fld} is set",
            )
        )
    return tuple(out)


class HTTPPathModifier(K8sModel):
    __k8s__: ClassVar[S] = S(rules=_path_modifier_rules())

    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: Annotated[str | None, S(max_length=1024)] = None
    replace_prefix_match: Annotated[str | None, S(max_length=1024)] = None


class HTTPRequestRedirectFilter(K8sModel):
    scheme: Literal["http", "https"] | None = None
    hostname: PreciseHostname | None = None
    path: HTTPPathModifier | None = None
    port: PortNumber | None = None
    status_code: Literal[301, 302] = 302


class HTTPURLRewriteFilter(K8sModel):
    hostname: PreciseHostname | None = None
    path: HTTPPathModifier | None = None


class Fraction(K8sModel):
    __k8s__: ClassVar[S] = S(
        rules=(
            Rule("self.numerator <= self.denominator", "numerator must be less than or equal to denominator"),
        )
    )

    numerator: Annotated[Int32, S(minimum=0)]
    denominator: Annotated[Int32, S(minimum=1)] = 100


class HTTPRequestMirrorFilter(K8sModel):
    __k8s__: ClassVar[S] = S(
        rules=(
            Rule(
                "!(has(self.percent) && has(self.fraction))",
                "Only one of percent or fraction may be specified in HTTPRequestMirrorFilter",
            ),
        )
    )

    backend_ref: BackendObjectReference
    percent: Annotated[Int32 | None, S(minimum=0, maximum=100)] = None
    fraction: Fraction | None = None


class LocalObjectReference(K8sModel):
    group: Group
    kind: Kind
    name: ObjectName


FILTER_FIELDS = (
    ("requestHeaderModifier", "RequestHeaderModifier"),
    ("responseHeaderModifier", "ResponseHeaderModifier"),
    ("requestMirror", "RequestMirror"),
    ("requestRedirect", "RequestRedirect"),
    ("urlRewrite", "URLRewrite"),
    ("extensionRef", "ExtensionRef"),
)


def _filter_rules() -> tuple[Rule, ...]:
    out: list[Rule] = []
    for fld, typ in FILTER_FIELDS:
        out.append(
            Rule(
                f"!(has(self.{fld}) && self.type != '{typ}')",
                f"filter.{fld} must be nil if the filter.type is not {typ}",
            )
        )
        out.append(
            Rule(
                f"!(!has(self.{fld}) && self.type == '{typ}')",
                f"filter.{fld} must be specified for {typ} filter.type",
            )
        )
    return tuple(out)


class HTTPRouteFilter(K8sModel):
    __k8s__: ClassVar[S] = S(rules=_filter_rules())

    type: Literal[
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestMirror",
        "RequestRedirect",
        "URLRewrite",
        "ExtensionRef",
    ]
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    request_redirect: HTTPRequestRedirectFilter | None = None
    url_rewrite: HTTPURLRewriteFilter | None = None
    extension_ref: LocalObjectReference | None = None


_NOT_BOTH_REDIRECT_REWRITE = Rule(
    "!(self.exists(f, f.type == 'RequestRedirect') && self.exists(f, f.type == 'URLRewrite'))",
    "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both",
)


def _not_repeated(typ: str) -> Rule:
    return Rule(f"self.filter(f, f.type == '{typ}').size() <= 1", f"{typ} filter cannot be repeated")


_NOT_REPEATED = tuple(
    _not_repeated(t)
    for t in ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite")
)

# Upstream puts the redirect/rewrite rule twice on backendRefs[].filters (a marker on the
# type and one on the field); the generated CRD repeats it, and so do we.
RuleFilters = Annotated[
    list[HTTPRouteFilter] | None, S(max_items=16, rules=(_NOT_BOTH_REDIRECT_REWRITE, *_NOT_REPEATED))
]
BackendRefFilters = Annotated[
    list[HTTPRouteFilter] | None,
    S(max_items=16, rules=(_NOT_BOTH_REDIRECT_REWRITE, _NOT_BOTH_REDIRECT_REWRITE, *_NOT_REPEATED)),
]


class HTTPBackendRef(K8sModel):
    __k8s__: ClassVar[S] = S(rules=(_SERVICE_PORT_RULE,))

    group: Group = ""
    kind: Kind = "Service"
    name: ObjectName
    namespace: Namespace | None = None
    port: PortNumber | None = None
    weight: Annotated[Int32, S(minimum=0, maximum=1000000)] = 1
    filters: BackendRefFilters = None


_PATH_TYPES = "['Exact', 'PathPrefix']"


def _path_match_rules() -> tuple[Rule, ...]:
    when = f"when type one of {_PATH_TYPES}"
    cond = "(self.type in ['Exact','PathPrefix'])"
    rules = [
        Rule(
            f"{cond} ? self.value.startsWith('/') : true",
            f"value must be an absolute path and start with '/' {when}",
        )
    ]
    for bad in ("//", "/./", "/../", "%2f", "%2F", "#"):
        rules.append(
            Rule(f"{cond} ? !self.value.contains('{bad}') : true", f"must not contain '{bad}' {when}")
        )
    for bad in ("/..", "/."):
        rules.append(
            Rule(f"{cond} ? !self.value.endsWith('{bad}') : true", f"must not end with '{bad}' {when}")
        )
    rules.append(
        Rule(
            "self.type in ['Exact','PathPrefix'] || self.type == 'RegularExpression'",
            "type must be one of ['Exact', 'PathPrefix', 'RegularExpression']",
        )
    )
    chars = r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$"
    rules.append(
        Rule(
            f'{cond} ? self.value.matches(r"""{chars}""") : true',
            f"must only contain valid characters (matching {chars}) for types {_PATH_TYPES}",
        )
    )
    return tuple(rules)


class HTTPPathMatch(K8sModel):
    __k8s__: ClassVar[S] = S(rules=_path_match_rules())

    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: Annotated[str, S(max_length=1024)] = "/"


class HTTPHeaderMatch(K8sModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: Annotated[str, S(min_length=1, max_length=4096)]


class HTTPQueryParamMatch(K8sModel):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: Annotated[str, S(min_length=1, max_length=1024)]


HTTPMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
DEFAULT_PATH_MATCH: dict[str, Any] = {"type": "PathPrefix", "value": "/"}


class HTTPRouteMatch(K8sModel):
    path: Annotated[HTTPPathMatch | None, S(default=DEFAULT_PATH_MATCH)] = None
    headers: Annotated[
        list[HTTPHeaderMatch] | None, S(max_items=16, list_type="map", list_map_keys=("name",))
    ] = None
    query_params: Annotated[
        list[HTTPQueryParamMatch] | None, S(max_items=16, list_type="map", list_map_keys=("name",))
    ] = None
    method: HTTPMethod | None = None


Duration = Annotated[str, S(pattern=DURATION_PATTERN)]


class HTTPRouteTimeouts(K8sModel):
    __k8s__: ClassVar[S] = S(
        rules=(
            Rule(
                "!(has(self.request) && has(self.backendRequest) && duration(self.request) != duration('0s') && "
                "duration(self.backendRequest) > duration(self.request))",
                "backendRequest timeout cannot be longer than request timeout",
            ),
        )
    )

    request: Duration | None = None
    backend_request: Duration | None = None


def _prefix_match_rule(filter_field: str, filter_name: str, within_backend_refs: bool) -> Rule:
    has_filter = (
        f"has(self.filters) && self.filters.exists_one(f, has(f.{filter_field}) && has(f.{filter_field}.path) && "
        f"f.{filter_field}.path.type == 'ReplacePrefixMatch' && has(f.{filter_field}.path.replacePrefixMatch))"
    )
    check = (
        "((size(self.matches) != 1 || !has(self.matches[0].path) || self.matches[0].path.type != 'PathPrefix') "
        "? false : true) : true"
    )
    if within_backend_refs:
        inner = has_filter.replace("self.filters", "b.filters")
        cond = f"(has(self.backendRefs) && self.backendRefs.exists_one(b, ({inner}) ))"
        lead = "Within backendRefs, when" if filter_name == "RequestRedirect" else "Within backendRefs, When"
    else:
        cond = f"({has_filter})"
        lead = "When"
    return Rule(
        f"{cond} ? {check}",
        f"{lead} using {filter_name} filter with path.replacePrefixMatch, exactly one PathPrefix match must be "
        "specified",
    )


_RULE_RULES = (
    Rule(
        "(has(self.backendRefs) && size(self.backendRefs) > 0) ? (!has(self.filters) || self.filters.all(f, "
        "!has(f.requestRedirect))): true",
        "RequestRedirect filter must not be used together with backendRefs",
    ),
    _prefix_match_rule("requestRedirect", "RequestRedirect", False),
    _prefix_match_rule("urlRewrite", "URLRewrite", False),
    _prefix_match_rule("requestRedirect", "RequestRedirect", True),
    _prefix_match_rule("urlRewrite", "URLRewrite", True),
)


class HTTPRouteRule(K8sModel):
    __k8s__: ClassVar[S] = S(rules=_RULE_RULES)

    matches: Annotated[
        list[HTTPRouteMatch] | None, S(max_items=64, default=[{"path": DEFAULT_PATH_MATCH}])
    ] = None
    filters: RuleFilters = None
    backend_refs: Annotated[list[HTTPBackendRef] | None, S(max_items=16)] = None
    timeouts: HTTPRouteTimeouts | None = None


MAX_RULES = 16
MAX_TOTAL_MATCHES = 128
_TOTAL_MATCHES_RULE = Rule(
    " + ".join(f"(self.size() > {i} ? self[{i}].matches.size() : 0)" for i in range(MAX_RULES))
    + f" <= {MAX_TOTAL_MATCHES}",
    "While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a "
    "route must be less than 128",
)

_SAME_PARENT = (
    "p1.group == p2.group && p1.kind == p2.kind && p1.name == p2.name && (((!has(p1.__namespace__) || "
    "p1.__namespace__ == '') && (!has(p2.__namespace__) || p2.__namespace__ == '')) || (has(p1.__namespace__) && "
    "has(p2.__namespace__) && p1.__namespace__ == p2.__namespace__ ))"
)
_PARENT_REF_RULES = (
    Rule(
        f"self.all(p1, self.all(p2, {_SAME_PARENT} ? ((!has(p1.sectionName) || p1.sectionName == '') == "
        "(!has(p2.sectionName) || p2.sectionName == '')) : true))",
        "sectionName must be specified when parentRefs includes 2 or more references to the same parent",
    ),
    Rule(
        f"self.all(p1, self.exists_one(p2, {_SAME_PARENT} && (((!has(p1.sectionName) || p1.sectionName == '') && "
        "(!has(p2.sectionName) || p2.sectionName == '')) || (has(p1.sectionName) && has(p2.sectionName) && "
        "p1.sectionName == p2.sectionName))))",
        "sectionName must be unique when parentRefs includes 2 or more references to the same parent",
    ),
)


class HTTPRouteSpec(K8sModel):
    parent_refs: Annotated[list[ParentReference] | None, S(max_items=32, rules=_PARENT_REF_RULES)] = None
    hostnames: Annotated[list[Hostname] | None, S(max_items=16)] = None
    rules: Annotated[
        list[HTTPRouteRule] | None,
        S(
            max_items=MAX_RULES,
            default=[{"matches": [{"path": DEFAULT_PATH_MATCH}]}],
            rules=(_TOTAL_MATCHES_RULE,),
        ),
    ] = None


class HTTPRouteStatus(K8sModel):
    parents: Annotated[list[RouteParentStatus], S(max_items=32)]


class HTTPRoute(Resource):
    """HTTPRoute: matches (path, headers, query, method), filters, weighted backendRefs."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "HTTPRoute"

    spec: HTTPRouteSpec
    status: HTTPRouteStatus | None = None


# ---------------------------------------------------------------------------------------
# ReferenceGrant (v1beta1)


class ReferenceGrantFrom(K8sModel):
    group: Group
    kind: Kind
    namespace: Namespace


class ReferenceGrantTo(K8sModel):
    group: Group
    kind: Kind
    name: ObjectName | None = None


class ReferenceGrantSpec(K8sModel):
    from_: Annotated[list[ReferenceGrantFrom], S(min_items=1, max_items=16)] = Field(alias="from")
    to: Annotated[list[ReferenceGrantTo], S(min_items=1, max_items=16)]


class ReferenceGrant(Resource):
    """ReferenceGrant (v1beta1): lets routes in other namespaces refer to objects here."""

    API_VERSION: ClassVar[str] = REFERENCE_GRANT_API_VERSION
    KIND: ClassVar[str] = "ReferenceGrant"

    spec: ReferenceGrantSpec | None = None
