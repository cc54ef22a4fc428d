"""Every ``x-kubernetes-validations`` rule of every generated schema: one valid, one invalid value.

``SAMPLES`` maps a rule's message to (valid, invalid) values of the node that carries the
rule; the test runs each pair at every place the rule occurs (HTTPRoute filters appear
under rules and under backendRefs, for example), after applying the schema defaults as
the API server does. A rule without samples fails ``test_every_rule_has_samples``.
"""

from __future__ import annotations

from typing import Any

import pytest

from infergate.api.validation import apply_schema_defaults, validate_cel, validate_tree

from .schema_walk import all_nodes, concrete

SVC = {"name": "svc", "port": 80}
HEADERS = {"set": [{"name": "x-a", "value": "b"}]}
FILTER_SAMPLES: dict[str, tuple[str, Any]] = {
    "requestHeaderModifier": ("RequestHeaderModifier", HEADERS),
    "responseHeaderModifier": ("ResponseHeaderModifier", HEADERS),
    "requestMirror": ("RequestMirror", {"backendRef": SVC}),
    "requestRedirect": ("RequestRedirect", {"scheme": "https"}),
    "urlRewrite": ("URLRewrite", {"hostname": "a.example.com"}),
    "extensionRef": ("ExtensionRef", {"group": "example.com", "kind": "Filter", "name": "f"}),
}


def _filter(field: str) -> dict[str, Any]:
    typ, value = FILTER_SAMPLES[field]
    return {"type": typ, field: value}


def _prefix_rule(field: str, within_backend_refs: bool, match_type: str) -> dict[str, Any]:
    f = {
        "type": FILTER_SAMPLES[field][0],
        field: {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}},
    }
    rule: dict[str, Any] = {"matches": [{"path": {"type": match_type, "value": "/a"}}]}
    if within_backend_refs:
        rule["backendRefs"] = [{**SVC, "filters": [f]}]
    else:
        rule["filters"] = [f]
    return rule


def _listener(name: str, protocol: str = "HTTP", port: int = 80, **extra: Any) -> dict[str, Any]:
    return {"name": name, "port": port, "protocol": protocol, **extra}


TLS = {"mode": "Terminate", "certificateRefs": [{"name": "cert"}]}
EXACT_MATCHES = [{"path": {"type": "PathPrefix", "value": "/"}}]

# message -> (valid node value, invalid node value)
SAMPLES: dict[str, tuple[Any, Any]] = {
    # InferencePool v1
    "port is required when kind is 'Service' or unspecified (defaults to 'Service')": (
        {"name": "epp", "port": {"number": 9002}},
        {"name": "epp"},
    ),
    # InferencePool v1 (v1.6.0: up to 8 target ports)
    "port number must be unique": (
        [{"number": 8000}, {"number": 8001}],
        [{"number": 8000}, {"number": 8001}, {"number": 8000}],
    ),
    # InferenceModel
    "Weights should be set for all models, or none of the models.": (
        [{"name": "a", "weight": 1}, {"name": "b", "weight": 3}],
        [{"name": "a", "weight": 1}, {"name": "b"}],
    ),
    # Gateway
    "IPAddress values must be unique": (
        [{"type": "IPAddress", "value": "10.0.0.1"}, {"type": "IPAddress", "value": "10.0.0.2"}],
        [{"type": "IPAddress", "value": "10.0.0.1"}, {"type": "IPAddress", "value": "10.0.0.1"}],
    ),
    "Hostname values must be unique": (
        [{"type": "Hostname", "value": "a.example.com"}, {"type": "Hostname", "value": "b.example.com"}],
        [{"type": "Hostname", "value": "a.example.com"}, {"type": "Hostname", "value": "a.example.com"}],
    ),
    "Hostname value must only contain valid characters (matching ^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    "(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$)": (
        {"type": "Hostname", "value": "*.example.com"},
        {"type": "Hostname", "value": "Bad_Host"},
    ),
    "Annotation keys must be in the form of an optional DNS subdomain prefix followed by a required name "
    "segment of up to 63 characters.": ({"example.com/key": "v"}, {"bad key": "v"}),
    "If specified, the annotation key's prefix must be a DNS subdomain not longer than 253 characters in "
    "total.": ({"example.com/key": "v"}, {"a" * 253 + "/key": "v"}),
    "Label keys must be in the form of an optional DNS subdomain prefix followed by a required name segment "
    "of up to 63 characters.": ({"example.com/key": "v"}, {"bad key": "v"}),
    "If specified, the label key's prefix must be a DNS subdomain not longer than 253 characters in total.": (
        {"example.com/key": "v"},
        {"a" * 253 + "/key": "v"},
    ),
    "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']": (
        [_listener("http")],
        [_listener("http", tls=TLS)],
    ),
    "tls mode must be Terminate for protocol HTTPS": (
        [_listener("https", "HTTPS", 443, tls=TLS)],
        [_listener("https", "HTTPS", 443, tls={**TLS, "mode": "Passthrough"})],
    ),
    "hostname must not be specified for protocols ['TCP', 'UDP']": (
        [_listener("tcp", "TCP", 9000)],
        [_listener("tcp", "TCP", 9000, hostname="a.example.com")],
    ),
    "Listener name must be unique within the Gateway": (
        [_listener("a"), _listener("b", port=81)],
        [_listener("a"), _listener("a", port=81)],
    ),
    "Combination of port, protocol and hostname must be unique for each listener": (
        [_listener("a"), _listener("b", hostname="b.example.com")],
        [_listener("a"), _listener("b")],
    ),
    "certificateRefs or options must be specified when mode is Terminate": (
        TLS,
        {"mode": "Terminate", "certificateRefs": [], "options": {}},
    ),
    # GatewayClass / InferenceModel transition rules are in test_transition_rules
    # HTTPRoute
    "sectionName must be specified when parentRefs includes 2 or more references to the same parent": (
        [{"name": "gw", "sectionName": "a"}, {"name": "gw", "sectionName": "b"}],
        [{"name": "gw"}, {"name": "gw", "sectionName": "b"}],
    ),
    "sectionName must be unique when parentRefs includes 2 or more references to the same parent": (
        [{"name": "gw", "sectionName": "a"}, {"name": "other", "sectionName": "a"}],
        [{"name": "gw", "sectionName": "a"}, {"name": "gw", "sectionName": "a"}],
    ),
    "While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a "
    "route must be less than 128": (
        [{"matches": EXACT_MATCHES * 64}, {"matches": EXACT_MATCHES * 64}],
        [{"matches": EXACT_MATCHES * 64}, {"matches": EXACT_MATCHES * 64}, {"matches": EXACT_MATCHES}],
    ),
    "RequestRedirect filter must not be used together with backendRefs": (
        {"filters": [_filter("requestRedirect")]},
        {"filters": [_filter("requestRedirect")], "backendRefs": [SVC]},
    ),
    "When using RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix match must be "
    "specified": (
        _prefix_rule("requestRedirect", False, "PathPrefix"),
        _prefix_rule("requestRedirect", False, "Exact"),
    ),
    "When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified": (
        _prefix_rule("urlRewrite", False, "PathPrefix"),
        _prefix_rule("urlRewrite", False, "Exact"),
    ),
    "Within backendRefs, when using RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix "
    "match must be specified": (
        _prefix_rule("requestRedirect", True, "PathPrefix"),
        _prefix_rule("requestRedirect", True, "Exact"),
    ),
    "Within backendRefs, When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match "
    "must be specified": (
        _prefix_rule("urlRewrite", True, "PathPrefix"),
        _prefix_rule("urlRewrite", True, "Exact"),
    ),
    "Must have port for Service reference": ({"name": "svc", "port": 80}, {"name": "svc"}),
    "May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both": (
        [_filter("urlRewrite")],
        [_filter("urlRewrite"), _filter("requestRedirect")],
    ),
    "RequestHeaderModifier filter cannot be repeated": (
        [_filter("requestHeaderModifier")],
        [_filter("requestHeaderModifier"), _filter("requestHeaderModifier")],
    ),
    "ResponseHeaderModifier filter cannot be repeated": (
        [_filter("responseHeaderModifier")],
        [_filter("responseHeaderModifier"), _filter("responseHeaderModifier")],
    ),
    "RequestRedirect filter cannot be repeated": (
        [_filter("requestRedirect")],
        [_filter("requestRedirect"), _filter("requestRedirect")],
    ),
    "URLRewrite filter cannot be repeated": (
        [_filter("urlRewrite")],
        [_filter("urlRewrite"), _filter("urlRewrite")],
    ),
    "Only one of percent or fraction may be specified in HTTPRequestMirrorFilter": (
        {"backendRef": SVC, "percent": 50},
        {"backendRef": SVC, "percent": 50, "fraction": {"numerator": 1}},
    ),
    "numerator must be less than or equal to denominator": (
        {"numerator": 1, "denominator": 2},
        {"numerator": 3, "denominator": 2},
    ),
    "replaceFullPath must be specified when type is set to 'ReplaceFullPath'": (
        {"type": "ReplaceFullPath", "replaceFullPath": "/x"},
        {"type": "ReplaceFullPath"},
    ),
    "type must be 'ReplaceFullPath' when replaceFullPath is set": (
        {"type": "ReplaceFullPath", "replaceFullPath": "/x"},
        {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/y", "replaceFullPath": "/x"},
    ),
    "replacePrefixMatch must be specified when type is set to 'ReplacePrefixMatch'": (
        {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/y"},
        {"type": "ReplacePrefixMatch"},
    ),
    "type must be 'ReplacePrefixMatch' when replacePrefixMatch is set": (
        {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/y"},
        {"type": "ReplaceFullPath", "replaceFullPath": "/x", "replacePrefixMatch": "/y"},
    ),
    "backendRequest timeout cannot be longer than request timeout": (
        {"request": "10s", "backendRequest": "5s"},
        {"request": "5s", "backendRequest": "1m"},
    ),
}

for _field, (_typ, _value) in FILTER_SAMPLES.items():
    _other = "urlRewrite" if _field == "requestHeaderModifier" else "requestHeaderModifier"
    SAMPLES[f"filter.{_field} must be nil if the filter.type is not {_typ}"] = (
        _filter(_field),
        {**_filter(_other), _field: _value},
    )
    SAMPLES[f"filter.{_field} must be specified for {_typ} filter.type"] = (_filter(_field), {"type": _typ})

_WHEN = "when type one of ['Exact', 'PathPrefix']"
for _msg, _bad in (
    (f"value must be an absolute path and start with '/' {_WHEN}", "foo"),
    (f"must not contain '//' {_WHEN}", "/a//b"),
    (f"must not contain '/./' {_WHEN}", "/a/./b"),
    (f"must not contain '/../' {_WHEN}", "/a/../b"),
    (f"must not contain '%2f' {_WHEN}", "/a%2fb"),
    (f"must not contain '%2F' {_WHEN}", "/a%2Fb"),
    (f"must not contain '#' {_WHEN}", "/a#b"),
    (f"must not end with '/..' {_WHEN}", "/a/.."),
    (f"must not end with '/.' {_WHEN}", "/a/."),
    (
        "must only contain valid characters (matching ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$) "
        "for types ['Exact', 'PathPrefix']",
        "/a b",
    ),
):
    SAMPLES[_msg] = ({"type": "PathPrefix", "value": "/a/b"}, {"type": "PathPrefix", "value": _bad})
SAMPLES["type must be one of ['Exact', 'PathPrefix', 'RegularExpression']"] = (
    {"type": "RegularExpression", "value": "/a.*"},
    {"type": "Glob", "value": "/a"},
)

TRANSITION_RULES = {"Value is immutable", "modelName is immutable"}


def _occurrences() -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    out = []
    for tid, path, node in all_nodes():
        for rule in node.get("x-kubernetes-validations", []):
            out.append((tid, path, node, rule))
    return out


def _params() -> list[Any]:
    seen: set[tuple[str, str, str]] = set()
    params = []
    for tid, path, node, rule in _occurrences():
        msg = rule["message"]
        if msg in TRANSITION_RULES or (tid, path, msg) in seen:
            continue
        seen.add((tid, path, msg))
        params.append(pytest.param(node, rule, concrete(path), id=f"{tid}:{path}:{msg[:60]}"))
    return params


def test_every_rule_has_samples() -> None:
    missing = sorted({r["message"] for _, _, _, r in _occurrences()} - set(SAMPLES) - TRANSITION_RULES)
    assert not missing, missing
    unused = sorted(set(SAMPLES) - {r["message"] for _, _, _, r in _occurrences()})
    assert not unused, unused


@pytest.mark.parametrize(("node", "rule", "path"), _params())
def test_rule(node: dict[str, Any], rule: dict[str, Any], path: str) -> None:
    valid, invalid = SAMPLES[rule["message"]]
    valid = apply_schema_defaults(valid, node)
    invalid = apply_schema_defaults(invalid, node)
    assert [str(e) for e in validate_tree(valid, node, path)] == []
    errors = [e for e in validate_cel(invalid, node, path) if e.detail == rule["message"]]
    assert errors, [str(e) for e in validate_cel(invalid, node, path)]
    node_type = node.get("type", "object")
    assert str(errors[0]) == f'{path}: Invalid value: "{node_type}": {rule["message"]}'


TRANSITIONS: list[Any] = [
    pytest.param("GatewayClass", "spec.controllerName", "example.com/a", "example.com/b", id="GatewayClass"),
    pytest.param("InferenceModel", "spec.modelName", "llama", "mistral", id="InferenceModel"),
]


@pytest.mark.parametrize(("tid", "path", "old", "new"), TRANSITIONS)
def test_transition_rules(tid: str, path: str, old: str, new: str) -> None:
    nodes = [
        (n, r) for t, p, n, r in _occurrences() if t == tid and p == path and r["message"] in TRANSITION_RULES
    ]
    assert len(nodes) == 1
    node, rule = nodes[0]
    # create: no old value, the rule does not run
    assert validate_cel(new, node, path) == []
    # update, unchanged: valid
    assert validate_cel(old, node, path, old) == []
    # update, changed: invalid
    assert [str(e) for e in validate_cel(new, node, path, old)] == [
        f'{path}: Invalid value: "string": {rule["message"]}'
    ]
