"""HTTPS listeners in the translator: certificateRefs, ReferenceGrants from Gateways, the
listener conditions of Gateway API v1.3, and the TLS filter chains of the IR (one per listener)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from infergate.controller.manifests import parse_manifests
from infergate.controller.resources import ObjectRef
from infergate.controller.snapshot import Snapshot
from infergate.controller.translator import TranslationResult, TranslatorOptions, translate
from infergate.controller.translator.addresses import LoopbackAllocator

from .tls_support import TestCA

TESTDATA = Path(__file__).parent / "testdata"
GW = "gateway.networking.k8s.io"


def run(objects: list[dict[str, Any]]) -> TranslationResult:
    return translate(Snapshot.of(objects), TranslatorOptions(addresses=LoopbackAllocator("127.0.2.0/24"),
                                                             now="2026-01-01T00:00:00Z"))


def listeners(result: TranslationResult, name: str = "gw") -> dict[str, dict[str, tuple[str, str]]]:
    status = result.statuses[ObjectRef(GW, "Gateway", "default", name)]
    return {lst["name"]: {c["type"]: (c["status"], c["reason"]) for c in lst["conditions"]}
            for lst in status["listeners"]}


def gateway(*listener_specs: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "infergate"},
         "spec": {"controllerName": "infergate.io/gateway-controller"}},
        {"apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": "default"},
         "spec": {"gatewayClassName": "infergate", "listeners": list(listener_specs)}},
    ]


def test_listener_conditions_for_valid_missing_not_permitted_and_invalid_certificates() -> None:
    result = run(parse_manifests((TESTDATA / "https_listeners.in.yaml").read_text(), "https_listeners"))
    found = listeners(result)
    for name in ("a", "b", "shared-granted"):
        assert found[name]["Programmed"] == ("True", "Programmed"), name
        assert found[name]["ResolvedRefs"] == ("True", "ResolvedRefs"), name
    expected = {"missing": "InvalidCertificateRef", "not-permitted": "RefNotPermitted",
                "wrong-type": "InvalidCertificateRef", "mismatched-key": "InvalidCertificateRef"}
    for name, reason in expected.items():
        assert found[name]["ResolvedRefs"] == ("False", reason), name
        assert found[name]["Programmed"] == ("False", "Invalid"), name
        assert found[name]["Accepted"] == ("True", "Accepted"), name
    https = [lst for lst in result.ir.listeners if lst.port == 8443]
    assert len(https) == 1
    chains = {chain.name.rsplit("/", 1)[-1]: chain for chain in https[0].tls}
    assert set(chains) == {"a", "b", "shared-granted"}  # invalid listeners are not served
    assert chains["shared-granted"].server_names == ("shared.example.com",)
    assert chains["shared-granted"].certificates == ("secret/certs/shared-cert",)
    assert [c.key for c in result.ir.certificates] == [
        "secret/certs/shared-cert", "secret/default/a-cert", "secret/default/b-cert"]
    assert "BEGIN CERTIFICATE" in result.ir.certificates[0].certificate_chain
    (plain,) = [lst for lst in result.ir.listeners if lst.port == 8080]
    assert not plain.tls


def test_a_listener_without_hostname_is_the_catch_all_chain_and_a_rotation_keeps_the_listener() -> None:
    ca = TestCA()
    first, second = ca.issue("any.example.test"), ca.issue("any.example.test")
    spec = {"name": "https", "port": 8443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "cert"}]}}
    before = run([*gateway(spec), first.secret("cert")])
    after = run([*gateway(spec), second.secret("cert")])
    (listener,) = before.ir.listeners
    assert listener.tls[0].server_names == ()
    assert before.ir.listeners == after.ir.listeners  # SDS: only the certificate changes
    assert before.ir.certificates[0].certificate_chain == first.certificate_pem
    assert after.ir.certificates[0].certificate_chain == second.certificate_pem


def test_a_malformed_secret_names_the_field() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cert", "namespace": "default"},
              "type": "kubernetes.io/tls",
              "data": {"tls.crt": base64.b64encode(b"not a certificate").decode(), "tls.key": "!!"}}
    spec = {"name": "https", "port": 8443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "cert"}]}}
    result = run([*gateway(spec), secret])
    status = result.statuses[ObjectRef(GW, "Gateway", "default", "gw")]
    (resolved,) = [c for c in status["listeners"][0]["conditions"] if c["type"] == "ResolvedRefs"]
    assert resolved["reason"] == "InvalidCertificateRef"
    assert "spec.listeners[0].tls.certificateRefs[0]: Secret default/cert: data.tls.key" in resolved["message"]
    assert not result.ir.listeners


def test_unsupported_protocols_and_tls_modes_are_not_accepted() -> None:
    result = run(gateway(
        {"name": "tcp", "port": 7000, "protocol": "TCP"},
        {"name": "passthrough", "port": 8443, "protocol": "HTTPS", "tls": {"mode": "Passthrough"}},
    ))
    found = listeners(result)
    assert found["tcp"]["Accepted"] == ("False", "UnsupportedProtocol")
    assert found["passthrough"]["Accepted"] == ("False", "UnsupportedValue")
    assert not result.ir.listeners


def test_http_and_https_on_one_port_conflict() -> None:
    ca = TestCA()
    result = run([*gateway(
        {"name": "http", "port": 8443, "protocol": "HTTP"},
        {"name": "https", "port": 8443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "cert"}]}},
    ), ca.issue("x.example.test").secret("cert")])
    found = listeners(result)
    assert found["http"]["Conflicted"] == ("True", "ProtocolConflict")
    assert found["https"]["Conflicted"] == ("True", "ProtocolConflict")
