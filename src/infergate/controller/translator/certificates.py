"""HTTPS listeners' ``tls.certificateRefs`` -> IR certificates, or the listener's ResolvedRefs reason.

Gateway API v1.3: a reference must name a Secret (core group) of type ``kubernetes.io/tls``
holding a PEM certificate chain and its private key (``tls.crt``, ``tls.key``); a Secret in
another namespace needs a ReferenceGrant there from Gateways of the listener's namespace.
A missing, malformed or unsupported Secret gives ``InvalidCertificateRef``, a reference no
ReferenceGrant permits ``RefNotPermitted``; either way the listener is not programmed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from infergate.controller import conditions as c
from infergate.controller.resources import CORE_GROUP, ObservedObject
from infergate.controller.snapshot import Snapshot
from infergate.controller.translator.rules import reference_granted
from infergate.ir import Certificate

TLS_SECRET_TYPE = "kubernetes.io/tls"


@dataclass(frozen=True)
class CertificateProblem:
    reason: str  # InvalidCertificateRef or RefNotPermitted
    message: str


def certificate_key(namespace: str, name: str) -> str:
    """The IR name of a Secret's certificate: stable across rotations of the Secret."""
    return f"secret/{namespace}/{name}"


def resolve_certificates(snapshot: Snapshot, gateway: ObservedObject, refs: Any,
                         path: str) -> tuple[tuple[Certificate, ...], CertificateProblem | None]:
    """The certificates ``refs`` name, or the first problem (then no certificate is used)."""
    if not refs:
        return (), CertificateProblem(c.REASON_INVALID_CERTIFICATE_REF,
                                      f"{path}: Required value: an HTTPS listener needs a certificate")
    certificates = []
    for index, ref in enumerate(refs):
        certificate, problem = _resolve(snapshot, gateway, ref, f"{path}[{index}]")
        if problem is not None:
            return (), problem
        assert certificate is not None
        certificates.append(certificate)
    return tuple(certificates), None


def _resolve(snapshot: Snapshot, gateway: ObservedObject, ref: Mapping[str, Any],
             path: str) -> tuple[Certificate | None, CertificateProblem | None]:
    group = str(ref.get("group") or CORE_GROUP)
    kind = str(ref.get("kind") or "Secret")
    name = str(ref.get("name") or "")
    namespace = str(ref.get("namespace") or gateway.namespace)

    def invalid(message: str) -> tuple[None, CertificateProblem]:
        return None, CertificateProblem(c.REASON_INVALID_CERTIFICATE_REF, f"{path}: {message}")

    if group != CORE_GROUP or kind != "Secret":
        return invalid(f"unsupported kind {kind}.{group or 'core'} (only core Secrets)")
    if namespace != gateway.namespace and not reference_granted(
            snapshot, gateway.namespace, CORE_GROUP, "Secret", namespace, name, from_kind="Gateway"):
        return None, CertificateProblem(
            c.REASON_REF_NOT_PERMITTED,
            f"{path}: reference to Secret {namespace}/{name} is not permitted by any ReferenceGrant")
    secret = snapshot.get(CORE_GROUP, "Secret", namespace, name)
    if secret is None:
        return invalid(f"Secret {namespace}/{name} not found")
    secret_type = secret.body.get("type")
    if secret_type != TLS_SECRET_TYPE:
        return invalid(f"Secret {namespace}/{name} has type {secret_type!r}, not {TLS_SECRET_TYPE!r}")
    data = secret.body.get("data") or {}
    try:
        chain = _decoded(data, "tls.crt")
        key = _decoded(data, "tls.key")
    except ValueError as exc:
        return invalid(f"Secret {namespace}/{name}: {exc}")
    problem = pem_problem(chain, key)
    if problem is not None:
        return invalid(f"Secret {namespace}/{name}: {problem}")
    return Certificate(certificate_key(namespace, name), chain, key), None


def _decoded(data: Mapping[str, Any], field: str) -> str:
    raw = data.get(field)
    if not raw:
        raise ValueError(f"data.{field}: Required value")
    try:
        return base64.b64decode(str(raw), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError(f"data.{field}: not base64-encoded PEM") from None


def pem_problem(chain: str, key: str) -> str | None:
    """Why ``chain``/``key`` cannot serve TLS (not PEM, or the key does not match), else None."""
    try:
        certificates = x509.load_pem_x509_certificates(chain.encode())
    except ValueError:
        return "data.tls.crt: not a PEM certificate"
    try:
        private_key = serialization.load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError):
        return "data.tls.key: not an unencrypted PEM private key"
    leaf_public = certificates[0].public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    own_public = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf_public != own_public:
        return "data.tls.key does not match the certificate in data.tls.crt"
    return None
